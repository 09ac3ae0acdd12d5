"""`fault.spike`: a step whose loss spikes above the running window rewinds the run to the newest
checkpoint at least `rewind_steps` back and skips `skip_batches` batches of data; the rewind is
logged, counted and checkpointed, so a resumed run makes the same decisions; past `max_rewinds`
the run stops with one error line. The spike comes from real data: the samples of two steps
replaced by a repeated rare token (tests/pretrain/spiky_data.py)."""

import os
import signal
import subprocess
import sys

import pytest
import torch

from pretrain.errors import PretrainError
from pretrain.training.checkpoint import layout
from pretrain.training.fault.config import FaultConfig, SpikeConfig
from pretrain.training.fault.spike import SpikeDetector, rewind_target
from tests.fixtures.pretrain import metrics_losses, tiny_config
from tests.pretrain.spiky_data import garbage_at_steps

SEED, SEQ_LEN, SAMPLES_PER_STEP = 7, 32, 8  # tiny_config's data order and step
GARBAGE_STEPS = range(14, 16)
STEPS = 20
SPIKE = {"window": 8, "zscore": 3.0, "rewind_steps": 2, "skip_batches": 4, "max_rewinds": 2}


# ---- detection and the choice of checkpoint (fast) -------------------------------------------
def test_no_loss_is_a_spike_before_the_window_is_full():
    detector = SpikeDetector(window=3, zscore=2.0)
    assert [detector.observe(x).spike for x in (5.0, 5.0, 50.0)] == [False, False, False]


def test_a_loss_above_mean_plus_zscore_std_is_a_spike_and_stays_out_of_the_window():
    detector = SpikeDetector(window=4, zscore=2.0)
    for loss in (4.0, 5.0, 4.0, 5.0):  # mean 4.5, std 0.5: the threshold is 5.5
        detector.observe(loss)
    assert not detector.observe(5.5).spike
    stats = detector.observe(6.0)  # window now 5, 4, 5, 5.5: mean 4.875, std ≈ 0.545
    assert stats.spike and stats.mean == pytest.approx(4.875)
    assert detector.losses == [5.0, 4.0, 5.0, 5.5]


def test_a_non_finite_loss_after_a_full_window_is_a_spike():
    detector = SpikeDetector(window=2, zscore=3.0)
    detector.observe(1.0), detector.observe(1.0)
    assert detector.observe(float("nan")).spike


def test_the_window_survives_a_checkpoint_round_trip():
    detector = SpikeDetector(window=3, zscore=2.0)
    for loss in (1.0, 1.5, 1.2, 1.4):
        detector.observe(loss)
    restored = SpikeDetector(window=3, zscore=2.0)
    restored.load_state_dict(detector.state_dict())
    assert restored.losses == [1.5, 1.2, 1.4]


def test_the_rewind_goes_to_the_newest_intact_checkpoint_at_least_rewind_steps_back(trained_run):
    # trained_run has checkpoints at steps 2 and 4
    assert rewind_target(trained_run, spike_step=7, rewind_steps=3).name == "step-000004"
    assert rewind_target(trained_run, spike_step=5, rewind_steps=2).name == "step-000002"


def test_the_rewind_never_goes_before_the_previous_rewind_point(trained_run):
    # step 2 would be far enough back, but it lies before the rewind to step 4 and its skip
    assert rewind_target(trained_run, spike_step=5, rewind_steps=2, not_before=4).name == "step-000004"


def test_a_spike_with_no_checkpoint_far_enough_back_is_one_error(trained_run):
    with pytest.raises(PretrainError, match=r"no intact checkpoint at or before step 0 .*fault.spike.rewind_steps"):
        rewind_target(trained_run, spike_step=2, rewind_steps=2)


@pytest.mark.parametrize("spike, key", [({"window": 1}, "fault.spike.window"),
                                        ({"zscore": 0}, "fault.spike.zscore"),
                                        ({"max_rewinds": -1}, "fault.spike.max_rewinds")])
def test_a_bad_spike_setting_names_its_key(spike, key):
    with pytest.raises(PretrainError, match=key.replace(".", r"\.")):
        FaultConfig(spike=SpikeConfig(**spike)).validate()


def test_a_bad_step_timeout_on_the_command_line_is_one_error_line(pretrain_data, tmp_path, capsys):
    from tests.pretrain.cli_in_process import slm_in_process

    config = tiny_config(tmp_path / "run", pretrain_data)
    proc = slm_in_process(capsys, "pretrain", "--config", config, "--fault.step_timeout_s", "-5")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: must be > 0 seconds (or null = off), got -5.0 (fault.step_timeout_s)"]
    assert not (tmp_path / "run" / "checkpoints").exists()


# ---- real runs over data with a garbage window (slow) ----------------------------------------
@pytest.fixture(scope="module")
def spiky_data(pretrain_data, tmp_path_factory):
    return garbage_at_steps(pretrain_data, tmp_path_factory.mktemp("spiky") / "data", GARBAGE_STEPS,
                            seed=SEED, seq_len=SEQ_LEN, samples_per_step=SAMPLES_PER_STEP)


def _config(run_dir, data, **spike):
    return tiny_config(run_dir, data, trainer={"max_steps": STEPS}, fault={"spike": {**SPIKE, **spike}})


@pytest.fixture(scope="module")
def spike_run(spiky_data, tmp_path_factory):
    from tests.fixtures.pretrain import _slm_pretrain

    run_dir = tmp_path_factory.mktemp("spike") / "run"
    proc = _slm_pretrain("--config", _config(run_dir, spiky_data), "--ckpt_path", "last")
    return run_dir, proc.stderr


def _datamodule_state(run_dir, step):
    state = torch.load(run_dir / "checkpoints" / layout.step_name(step) / layout.STATE_NAME, weights_only=True)
    return state["PretrainDataModule"]


@pytest.mark.slow
def test_a_garbage_window_is_rewound_skipped_and_the_run_finishes(spike_run):
    run_dir, stderr = spike_run
    rewinds = [line for line in stderr.splitlines() if line.startswith("loss spike at step")]
    assert len(rewinds) == 1 and rewinds[0].startswith(f"loss spike at step {GARBAGE_STEPS[0]}: loss ")
    assert "back to checkpoint step-000012 (step 12), skipping the next 4 batches" in rewinds[0]
    losses = metrics_losses(run_dir)
    assert sorted(losses) == list(range(1, STEPS + 1))  # the abandoned steps' rows were replaced
    from pretrain.training.run_logs import read_metrics

    counted = {int(r["step"]): int(r["rewinds"]) for r in read_metrics(run_dir / "metrics.csv") if r["loss"]}
    assert counted == {s: int(s > 12) for s in range(1, STEPS + 1)}
    # The data position moved on by the 4 skipped steps of data, and that is checkpointed.
    state = _datamodule_state(run_dir, STEPS)
    assert state["samples_consumed"] == (STEPS + 4) * SAMPLES_PER_STEP
    (rewind,) = state["rewinds"]
    assert (rewind["spike_step"], rewind["to_step"], rewind["from_sample"], rewind["skipped_samples"]) == (
        14, 12, 12 * SAMPLES_PER_STEP, 4 * SAMPLES_PER_STEP)
    assert rewind["loss"] > rewind["window_mean"] + SPIKE["zscore"] * rewind["window_std"]
    assert max(losses[s] for s in range(13, STEPS + 1)) < rewind["window_mean"]  # garbage never trained on


@pytest.mark.slow
def test_the_rewind_point_is_saved_again_with_the_skip_applied(spike_run):
    run_dir, _ = spike_run
    state = _datamodule_state(run_dir, 12)
    assert state["samples_consumed"] == 16 * SAMPLES_PER_STEP and len(state["rewinds"]) == 1


@pytest.mark.slow
def test_a_run_killed_after_its_rewind_resumes_to_the_same_losses(spiky_data, spike_run, tmp_path, run_pretrain):
    straight_dir, _ = spike_run
    run_dir = tmp_path / "run"
    config = _config(run_dir, spiky_data)
    command = [sys.executable, "-m", "pretrain.cli", "pretrain", "--config", str(config), "--ckpt_path", "last"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        for line in proc.stderr:  # kill as soon as the rewind is decided
            if line.startswith("loss spike at step"):
                break
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    run_pretrain("--config", config, "--ckpt_path", "last")
    resumed, straight = metrics_losses(run_dir), metrics_losses(straight_dir)
    assert sorted(resumed) == sorted(straight) == list(range(1, STEPS + 1))
    for step in resumed:
        assert abs(resumed[step] - straight[step]) <= 1e-6, (step, resumed[step], straight[step])
    assert _datamodule_state(run_dir, STEPS) == _datamodule_state(straight_dir, STEPS)


@pytest.mark.slow
def test_more_spikes_than_max_rewinds_stop_the_run_with_one_error_line(spiky_data, tmp_path):
    # Skipping one batch from step 12 lands on the second garbage step: a second spike.
    config = _config(tmp_path / "run", spiky_data, skip_batches=1, max_rewinds=1)
    proc = subprocess.run([sys.executable, "-m", "pretrain.cli", "pretrain", "--config", str(config)],
                          capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600)
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr
    assert errors[0].startswith("error: loss spike at step 13 ") and errors[0].endswith("(fault.spike.max_rewinds)")


@pytest.mark.slow
def test_two_sharded_ranks_rewind_together_like_one_process(spiky_data, spike_run, tmp_path, run_pretrain):
    straight_dir, _ = spike_run
    run_dir = tmp_path / "run"
    config = tiny_config(run_dir, spiky_data, trainer={"max_steps": STEPS, "strategy": "fsdp2", "devices": 2},
                         fault={"spike": SPIKE})
    proc = run_pretrain("--config", config)
    assert sum(line.startswith("loss spike at step 14:") for line in proc.stderr.splitlines()) == 1
    sharded, single = metrics_losses(run_dir), metrics_losses(straight_dir)
    assert sorted(sharded) == sorted(single) == list(range(1, STEPS + 1))
    for step in sharded:
        assert abs(sharded[step] - single[step]) <= 1e-5, (step, sharded[step], single[step])
