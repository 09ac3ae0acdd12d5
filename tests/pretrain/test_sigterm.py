"""SIGTERM (Kubernetes, other schedulers, `scancel` without `--signal`) makes `slm pretrain`
checkpoint at the next optimizer step and exit 0; `--ckpt_path last` then resumes exactly."""

import os
import signal
import subprocess
import sys
import time

import pytest

from pretrain.training.checkpoint import layout
from tests.fixtures.pretrain import assert_same_losses, metrics_losses, tiny_config

pytestmark = pytest.mark.slow

STEPS = 30


def _run_until_step_then_sigterm(config, run_dir, step: int) -> subprocess.CompletedProcess:
    """Start `slm pretrain`, send SIGTERM to it (the launching process only) once metrics.csv
    shows `step`, and wait for it to end."""
    command = [sys.executable, "-m", "pretrain.cli", "pretrain", "--config", str(config),
               "--ckpt_path", "last"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 300
    while not metrics_reached(run_dir, step):
        assert proc.poll() is None, f"run ended before the signal:\n{proc.stderr.read()[-3000:]}"
        assert time.monotonic() < deadline, "run too slow"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=300)
    return subprocess.CompletedProcess(command, proc.returncode, stdout, stderr)


def metrics_reached(run_dir, step: int) -> bool:
    try:
        return max(metrics_losses(run_dir), default=0) >= step
    except (OSError, ValueError, KeyError):  # not written yet, or a row half-flushed
        return False


@pytest.fixture(scope="module")
def reference(pretrain_data, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    from tests.fixtures.pretrain import _slm_pretrain

    _slm_pretrain("--config", tiny_config(run_dir, pretrain_data, trainer={"max_steps": STEPS},
                                          checkpoint={"every_n_steps": 100}))
    return metrics_losses(run_dir)


def test_sigterm_checkpoints_at_the_next_step_exits_0_and_resumes_exactly(
        pretrain_data, tmp_path, run_pretrain, reference):
    run_dir = tmp_path / "run"
    config = tiny_config(run_dir, pretrain_data, trainer={"max_steps": STEPS},
                         checkpoint={"every_n_steps": 100})
    proc = _run_until_step_then_sigterm(config, run_dir, 3)
    assert proc.returncode == 0, proc.stderr[-3000:]
    [checkpoint] = layout.complete_checkpoints(run_dir)  # the signal's, no other
    stopped_at = layout.checkpoint_step(checkpoint)
    assert 3 <= stopped_at < STEPS
    assert f"SIGTERM: checkpointing at step {stopped_at} and stopping" in proc.stderr
    assert layout.verify_checkpoint(checkpoint) is None
    assert max(metrics_losses(run_dir)) == stopped_at  # it stopped right there

    resumed = run_pretrain("--config", config, "--ckpt_path", "last")
    assert f"resuming from {checkpoint}" in resumed.stderr
    assert_same_losses(metrics_losses(run_dir), reference, list(range(1, STEPS + 1)), 1e-6)


def test_sigterm_to_the_launcher_of_two_sharded_ranks_checkpoints_on_both_and_resumes_exactly(
        pretrain_data, tmp_path, run_pretrain, reference):
    run_dir = tmp_path / "run"
    config = tiny_config(run_dir, pretrain_data, trainer={"max_steps": STEPS, "strategy": "fsdp2",
                                                          "devices": 2},
                         checkpoint={"every_n_steps": 100})
    proc = _run_until_step_then_sigterm(config, run_dir, 3)
    assert proc.returncode == 0, proc.stderr[-3000:]
    [checkpoint] = layout.complete_checkpoints(run_dir)
    stopped_at = layout.checkpoint_step(checkpoint)
    assert 3 <= stopped_at < STEPS
    shards = sorted(p.name for p in (checkpoint / layout.STATE_NAME).glob("*.distcp"))
    assert len(shards) == 2  # both ranks wrote their part at the same step

    run_pretrain("--config", config, "--ckpt_path", "last")
    assert_same_losses(metrics_losses(run_dir), reference, list(range(1, STEPS + 1)), 1e-5)
