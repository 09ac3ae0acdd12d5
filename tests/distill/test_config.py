"""`DistillConfig.validate`: a distillation run's values, each mistake naming its key."""

import pytest

from pretrain.distill.config import DistillConfig
from pretrain.errors import PretrainError


def test_a_teacher_with_default_alpha_and_temperature_is_an_online_run():
    config = DistillConfig(teacher="runs/demo-cpu").validate()
    assert (config.mode, config.alpha, config.temperature) == ("online", 0.5, 1.0)


def test_a_cache_with_top_k_is_a_cached_run():
    assert DistillConfig(cache="runs/cache", top_k=16).validate().mode == "cached"


@pytest.mark.parametrize("teacher, cache", [(None, None), ("runs/t", "runs/c")])
def test_exactly_one_of_teacher_and_cache_is_required(teacher, cache):
    with pytest.raises(PretrainError, match=r"exactly one of distill.teacher .* \(distill\)$"):
        DistillConfig(teacher=teacher, cache=cache).validate()


@pytest.mark.parametrize("alpha", [-0.01, 1.01, "high"])
def test_alpha_outside_0_1_names_distill_alpha(alpha):
    with pytest.raises(PretrainError, match=r"\(distill.alpha\)$"):
        DistillConfig(teacher="t", alpha=alpha).validate()


@pytest.mark.parametrize("temperature", [0.0, -1.0])
def test_temperature_not_positive_names_distill_temperature(temperature):
    with pytest.raises(PretrainError, match=r"must be > 0.*\(distill.temperature\)$"):
        DistillConfig(teacher="t", temperature=temperature).validate()


@pytest.mark.parametrize("config", [DistillConfig(teacher="t", top_k=8),
                                    DistillConfig(cache="c", top_k=0)])
def test_top_k_only_selects_a_positive_number_of_cached_ids(config):
    with pytest.raises(PretrainError, match=r"\(distill.top_k\)$"):
        config.validate()
