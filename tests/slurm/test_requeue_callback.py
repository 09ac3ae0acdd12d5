"""RequeueOnSignal without a cluster: SLURM's warning signal mid-step makes the run's
PeriodicCheckpoint save at the next step boundary, stops training, then requeues the job once.
(tests/slurm/test_training.py runs the same path as a real SLURM job.)"""

import os
import signal

from pretrain.slurm.requeue import RequeueOnSignal
from tests.fixtures.pretrain import tiny_config

REQUEUE_CALLBACK = "pretrain.slurm.requeue.RequeueOnSignal"


def fake_scontrol(bin_dir, calls_file):
    """An `scontrol` on PATH that records its arguments, one call per line."""
    bin_dir.mkdir()
    script = bin_dir / "scontrol"
    script.write_text(f'#!/bin/sh\necho "$@" >> "{calls_file}"\n')
    script.chmod(0o755)
    return bin_dir


def test_warning_signal_mid_step_checkpoints_that_step_stops_and_requeues(
        pretrain_data, tmp_path, monkeypatch):
    from pretrain.training.checkpoint.layout import complete_checkpoints, read_checkpoint_meta
    from pretrain.commands.pretrain import run

    calls = tmp_path / "scontrol-calls.txt"
    bin_dir = fake_scontrol(tmp_path / "bin", calls)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    def signal_during_step_3(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == 2:  # step 3 has begun
            os.kill(os.getpid(), signal.SIGUSR1)

    monkeypatch.setattr(RequeueOnSignal, "on_train_batch_start", signal_during_step_3)
    run_dir = tmp_path / "run"
    config = tiny_config(run_dir, pretrain_data, trainer={"max_steps": 8},
                         checkpoint={"every_n_steps": 100, "save_at_end": False})
    previous_handler = signal.getsignal(signal.SIGUSR1)
    try:
        assert run(["--config", str(config), f"--trainer.callbacks+={REQUEUE_CALLBACK}"]) == 0
    finally:
        signal.signal(signal.SIGUSR1, previous_handler)

    assert [p.name for p in complete_checkpoints(run_dir)] == ["step-000003"]
    assert read_checkpoint_meta(run_dir / "checkpoints" / "last")["step"] == 3
    assert calls.read_text().splitlines() == ["requeue 4242"]
