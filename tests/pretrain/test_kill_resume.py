"""A run killed with SIGKILL mid-training continues from its last complete checkpoint when the
same command is run again with `--ckpt_path last`; half-written checkpoints are ignored."""

import os
import signal
import subprocess
import sys
import time

import pytest

from pretrain.training.checkpoint import layout
from tests.fixtures.pretrain import metrics_losses, tiny_config

pytestmark = pytest.mark.slow


def test_sigkill_then_rerun_resumes_from_the_last_complete_checkpoint(pretrain_data, tmp_path, run_pretrain):
    steps = 30
    reference = tmp_path / "reference"
    run_pretrain("--config", tiny_config(reference, pretrain_data, trainer={"max_steps": steps},
                                         checkpoint={"every_n_steps": 3}))
    run_dir = tmp_path / "run"
    config = tiny_config(run_dir, pretrain_data, trainer={"max_steps": steps},
                         checkpoint={"every_n_steps": 3})
    command = [sys.executable, "-m", "pretrain.cli", "pretrain", "--config", str(config), "--ckpt_path", "last"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 240
        while layout.latest_checkpoint(run_dir) is None or layout.checkpoint_step(layout.latest_checkpoint(run_dir)) < 6:
            assert proc.poll() is None and time.monotonic() < deadline, "run ended before the kill"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    killed_at = layout.checkpoint_step(layout.latest_checkpoint(run_dir))
    assert killed_at < steps
    # What a kill during a save leaves behind, plus a stray directory without meta.json.
    half = layout.begin_checkpoint(run_dir, layout.step_name(killed_at + 3))
    (half / layout.STATE_NAME).write_bytes(b"truncated")
    (run_dir / "checkpoints" / layout.step_name(99)).mkdir()

    proc = run_pretrain("--config", config, "--ckpt_path", "last")
    assert f"resuming from {run_dir / 'checkpoints' / layout.step_name(killed_at)}" in proc.stderr
    final, expected = metrics_losses(run_dir), metrics_losses(reference)
    assert sorted(final) == list(range(1, steps + 1))
    for step in range(1, steps + 1):
        assert abs(final[step] - expected[step]) <= 1e-6, (step, final[step], expected[step])
    assert layout.latest_checkpoint(run_dir).name == layout.step_name(steps)
