"""Distillation in `slm pretrain`: the loss is (1 − α)·CE + α·T²·KL with its parts logged,
online (a teacher model in the step) and cached (`slm distill cache`), resuming exactly; bad
distillation settings are one `error:` line before any work."""

import math

import pytest

from tests.distill.conftest import SEQ_LEN
from tests.fixtures.pretrain import assert_same_losses, metrics_losses, tiny_config
from tests.pretrain.cli_in_process import slm_in_process
from tests.user_errors import assert_user_error

STUDENT = {"n_layers": 1}


def _config(run_dir, data_dir, distill, **sections):
    return tiny_config(run_dir, data_dir, model={**STUDENT, **sections.pop("model", {})},
                       distill=distill, **sections)


@pytest.fixture(scope="module")
def online_run(trained_run, pretrain_data, tmp_path_factory):
    from tests.fixtures.pretrain import _slm_pretrain

    run_dir = tmp_path_factory.mktemp("online") / "run"
    _slm_pretrain("--config", _config(run_dir, pretrain_data, {"teacher": str(trained_run),
                                                               "alpha": 0.7, "temperature": 2.0}))
    return run_dir


def test_the_logged_loss_is_the_mix_of_its_logged_parts(online_run):
    from pretrain.training.run_logs import read_metrics

    rows = [r for r in read_metrics(online_run / "metrics.csv") if r["loss"]]
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    for row in rows:
        loss, ce, kl = float(row["loss"]), float(row["ce"]), float(row["kl"])
        assert kl > 0 and math.isclose(loss, 0.3 * ce + 0.7 * 4.0 * kl, rel_tol=1e-5)


def test_an_online_distilled_run_resumes_exactly(online_run, trained_run, pretrain_data, tmp_path, run_pretrain):
    resumed = tmp_path / "resumed"
    run_pretrain("--config", _config(resumed, pretrain_data, {"teacher": str(trained_run), "alpha": 0.7,
                                                              "temperature": 2.0}),
                 "--ckpt_path", online_run / "checkpoints" / "step-000002")
    assert_same_losses(metrics_losses(resumed), {s: v for s, v in metrics_losses(online_run).items() if s > 2},
                       [3, 4], 1e-6)


def test_alpha_zero_trains_like_plain_cross_entropy(trained_run, pretrain_data, tmp_path, run_pretrain):
    plain, distilled = tmp_path / "plain", tmp_path / "alpha0"
    run_pretrain("--config", tiny_config(plain, pretrain_data, model=STUDENT, trainer={"max_steps": 2}))
    run_pretrain("--config", _config(distilled, pretrain_data, {"teacher": str(trained_run), "alpha": 0.0},
                                     trainer={"max_steps": 2}))
    assert_same_losses(metrics_losses(distilled), metrics_losses(plain), [1, 2], 1e-5)
    assert_same_losses(metrics_losses(distilled, "val_loss"), metrics_losses(plain, "val_loss"), [2], 1e-5)


def test_a_cached_teacher_trains_and_resumes_exactly(teacher_cache, pretrain_data, tmp_path, run_pretrain):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    distill = {"cache": str(teacher_cache), "alpha": 0.5, "top_k": 4}
    run_pretrain("--config", _config(straight, pretrain_data, distill))
    run_pretrain("--config", _config(resumed, pretrain_data, distill),
                 "--ckpt_path", straight / "checkpoints" / "step-000002")
    assert_same_losses(metrics_losses(resumed), {s: v for s, v in metrics_losses(straight).items() if s > 2},
                       [3, 4], 1e-6)
    assert all(v > 0 for v in metrics_losses(straight, "kl").values())


@pytest.mark.parametrize("distill, fragments", [
    ({"teacher": "no/such/run"}, ["teacher not found", "no/such/run"]),
    ({"teacher": "TEACHER", "alpha": 1.5}, ["must be in [0, 1], got 1.5 (distill.alpha)"]),
    ({"teacher": "TEACHER", "temperature": 0}, ["must be > 0, got 0.0 (distill.temperature)"]),
])
def test_bad_distillation_settings_are_one_error_line_before_any_work(capsys, trained_run, pretrain_data,
                                                                       tmp_path, distill, fragments):
    distill = {k: (str(trained_run) if v == "TEACHER" else v) for k, v in distill.items()}
    run_dir = tmp_path / "run"
    proc = slm_in_process(capsys, "pretrain", "--config", _config(run_dir, pretrain_data, distill))
    assert_user_error(proc, *fragments)
    assert not (run_dir / "checkpoints").exists()


def test_a_teacher_of_another_vocabulary_is_one_error_line(capsys, trained_tokenizer, pretrain_data, tmp_path):
    from model import Llama, LlamaConfig
    from model.hf import save_pretrained

    teacher = tmp_path / "wide-teacher"  # the shards' tokenizer, but 1152 output ids
    save_pretrained(Llama(LlamaConfig.from_name("debug-100k", vocab_size=1152)), teacher, trained_tokenizer)
    config = _config(tmp_path / "run", pretrain_data, {"teacher": str(teacher)})
    assert_user_error(slm_in_process(capsys, "pretrain", "--config", config),
                      "vocabulary mismatch: the teacher predicts 1152 ids, the student 1024")


def test_a_cache_made_for_another_sequence_length_is_one_error_line(capsys, teacher_cache, pretrain_data, tmp_path):
    config = _config(tmp_path / "run", pretrain_data, {"cache": str(teacher_cache)},
                     data={"seq_len": 2 * SEQ_LEN, "global_batch_tokens": 512})
    assert_user_error(slm_in_process(capsys, "pretrain", "--config", config), "teacher cache holds contexts of seq_len 32, training uses 64", "distill.cache)")


@pytest.mark.slow
def test_online_distillation_under_fsdp2_on_two_processes_equals_one_process(online_run, trained_run,
                                                                            pretrain_data, tmp_path, run_pretrain):
    sharded = tmp_path / "fsdp2"
    run_pretrain("--config", _config(sharded, pretrain_data, {"teacher": str(trained_run), "alpha": 0.7,
                                                              "temperature": 2.0},
                                     trainer={"strategy": "fsdp2", "devices": 2}))
    assert_same_losses(metrics_losses(sharded), metrics_losses(online_run), [1, 2, 3, 4], 1e-5)
    assert_same_losses(metrics_losses(sharded, "kl"), metrics_losses(online_run, "kl"), [1, 2, 3, 4], 1e-5)
