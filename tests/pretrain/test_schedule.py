"""Learning-rate schedules: exact values at the points that define them."""

import math

import pytest

from pretrain.errors import PretrainError
from pretrain.training.schedule import LRSchedule


def test_warmup_is_linear_from_lr_over_warmup_steps():
    s = LRSchedule(lr=1e-3, min_lr=1e-4, warmup_steps=10, max_steps=100)
    assert s.lr_at(0) == pytest.approx(1e-4)
    assert s.lr_at(4) == pytest.approx(5e-4)
    assert s.lr_at(9) == pytest.approx(1e-3)


def test_cosine_reaches_midpoint_halfway_and_min_lr_at_max_steps():
    s = LRSchedule(lr=4e-4, min_lr=4e-5, warmup_steps=2000, max_steps=12000)
    assert s.lr_at(2000) == pytest.approx(4e-4)
    assert s.lr_at(7000) == pytest.approx((4e-4 + 4e-5) / 2)
    assert s.lr_at(12000) == pytest.approx(4e-5)
    assert s.lr_at(50000) == pytest.approx(4e-5)
    quarter = 2000 + 2500
    assert s.lr_at(quarter) == pytest.approx(4e-5 + 0.5 * 3.6e-4 * (1 + math.cos(math.pi / 4)))


def test_wsd_is_flat_until_the_decay_fraction_then_linear_to_min_lr():
    s = LRSchedule(lr=1e-3, min_lr=0.0, warmup_steps=10, max_steps=100, kind="wsd", decay_fraction=0.2)
    assert s.lr_at(10) == s.lr_at(79) == pytest.approx(1e-3)
    assert s.lr_at(80) == pytest.approx(1e-3)
    assert s.lr_at(90) == pytest.approx(5e-4)
    assert s.lr_at(100) == pytest.approx(0.0)


def test_multiplier_is_lr_over_peak_for_lambda_lr():
    s = LRSchedule(lr=2e-3, min_lr=2e-4, warmup_steps=0, max_steps=10)
    assert s(0) == pytest.approx(1.0)
    assert s(10) == pytest.approx(0.1)


@pytest.mark.parametrize("kwargs, key", [
    (dict(kind="linear"), "model.schedule"),
    (dict(warmup_steps=200), "model.warmup_steps"),
    (dict(min_lr=1.0), "model.min_lr"),
    (dict(kind="wsd", decay_fraction=0.0), "model.decay_fraction"),
])
def test_bad_schedule_settings_are_user_errors(kwargs, key):
    settings = dict(lr=1e-3, min_lr=1e-4, warmup_steps=10, max_steps=100) | kwargs
    with pytest.raises(PretrainError, match=key):
        LRSchedule(**settings)
