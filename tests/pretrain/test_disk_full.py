"""A full disk under a run: a checkpoint that cannot be written leaves no partial directory and
keeps every earlier one; `checkpoint.on_error: continue` trains on and retries at the next
interval, `stop` ends with an error (a scheduler requeues); a final checkpoint that cannot be
written is one `error:` line; logs on a full disk warn once and never end training.

The disks are real: size-limited tmpfs mounts (we are root here and in CI; else skipped)."""

import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

from pretrain.training.checkpoint import layout
from tests.fixtures.pretrain import _slm_pretrain, assert_same_losses, metrics_losses, tiny_config

pytestmark = pytest.mark.slow

STEPS = 12


@contextmanager
def tmpfs(directory: Path, kbytes: int):
    """A real filesystem of `kbytes` KiB mounted at `directory` for the block."""
    directory.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={kbytes}k", "tmpfs", str(directory)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=True)


def resize(directory: Path, kbytes: int) -> None:
    subprocess.run(["mount", "-o", f"remount,size={kbytes}k", str(directory)], check=True)


@pytest.fixture(scope="module")
def reference(pretrain_data, tmp_path_factory):
    """An uninterrupted run: its losses, and the size of one of its checkpoints in KiB."""
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    _slm_pretrain("--config", tiny_config(run_dir, pretrain_data, trainer={"max_steps": STEPS},
                                          checkpoint={"every_n_steps": 2}))
    checkpoint = layout.latest_checkpoint(run_dir)
    kbytes = sum(f.stat().st_size for f in checkpoint.rglob("*") if f.is_file()) // 1024
    return metrics_losses(run_dir), kbytes


def _popen(config, *args):
    return subprocess.Popen([sys.executable, "-m", "pretrain.cli", "pretrain", "--config", str(config), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})


def _assert_no_partial_checkpoint(run_dir):
    leftovers = [p.name for p in layout.checkpoints_dir(run_dir).iterdir()
                 if p.name.startswith(layout.TMP_PREFIX)]
    assert leftovers == []


def _assert_intact(run_dir, steps):
    for step in steps:
        assert layout.verify_checkpoint(layout.checkpoints_dir(run_dir) / layout.step_name(step)) is None


def _error_lines(stderr):
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def test_continue_keeps_training_and_retries_when_space_comes_back(pretrain_data, tmp_path, reference):
    losses, ckpt_kb = reference
    run_dir = tmp_path / "run"
    config = tiny_config(run_dir, pretrain_data, trainer={"max_steps": STEPS},
                         checkpoint={"every_n_steps": 2, "on_error": "continue"})
    with tmpfs(layout.checkpoints_dir(run_dir), int(ckpt_kb * 2.5)) as disk:  # room for two
        proc = _popen(config)
        stderr = []
        for line in proc.stderr:
            stderr.append(line)
            if "was not written" in line and len([s for s in stderr if "was not written" in s]) == 1:
                resize(disk, ckpt_kb * 64)  # an operator frees space
        proc.wait(timeout=300)
        stderr = "".join(stderr)
        assert proc.returncode == 0, stderr[-3000:]
        [warning] = [line for line in stderr.splitlines() if "checkpoint step-000006 was not written" in line]
        assert "No space left on device" in warning
        assert f"newest intact checkpoint: {disk / layout.step_name(4)}" in warning
        assert "tries again in 2 steps" in warning
        _assert_no_partial_checkpoint(run_dir)
        assert not (disk / layout.step_name(6)).exists()
        saved = [layout.checkpoint_step(p) for p in layout.complete_checkpoints(run_dir)]
        assert saved[:2] == [2, 4] and saved[-1] == STEPS  # retried, up to the final one
        _assert_intact(run_dir, saved)
        assert (disk / layout.LAST_LINK).resolve().name == layout.step_name(STEPS)
    assert_same_losses(metrics_losses(run_dir), losses, list(range(1, STEPS + 1)), 1e-6)


def test_stop_ends_the_run_with_an_error_and_keeps_the_earlier_checkpoints(pretrain_data, tmp_path, reference):
    _, ckpt_kb = reference
    run_dir = tmp_path / "run"
    config = tiny_config(run_dir, pretrain_data, trainer={"max_steps": STEPS},
                         checkpoint={"every_n_steps": 2, "on_error": "stop"})
    with tmpfs(layout.checkpoints_dir(run_dir), int(ckpt_kb * 2.5)):
        proc = subprocess.run([sys.executable, "-m", "pretrain.cli", "pretrain", "--config", str(config)],
                              capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert proc.returncode == 2, proc.stderr[-3000:]
        assert _error_lines(proc.stderr) == [
            "error: stopping: checkpoint at step 6 could not be written (checkpoint.on_error stop)"]
        assert "Traceback" not in proc.stderr
        _assert_no_partial_checkpoint(run_dir)
        assert [p.name for p in layout.complete_checkpoints(run_dir)] == ["step-000002", "step-000004"]
        _assert_intact(run_dir, [2, 4])
    assert max(metrics_losses(run_dir)) == 6  # stopped at the failed save


def test_a_final_checkpoint_that_cannot_be_written_is_one_error_line(pretrain_data, tmp_path, reference):
    _, ckpt_kb = reference
    run_dir = tmp_path / "run"
    config = tiny_config(run_dir, pretrain_data, trainer={"max_steps": 4},
                         checkpoint={"every_n_steps": 100})
    with tmpfs(layout.checkpoints_dir(run_dir), ckpt_kb // 2):
        proc = subprocess.run([sys.executable, "-m", "pretrain.cli", "pretrain", "--config", str(config)],
                              capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert proc.returncode == 2, proc.stderr[-3000:]
        [line] = _error_lines(proc.stderr)
        assert line == (f"error: the final checkpoint (step 4) could not be written: the steps after the "
                        f"newest intact one are lost ({layout.checkpoints_dir(run_dir)})")
        assert "Traceback" not in proc.stderr
        _assert_no_partial_checkpoint(run_dir)
        assert layout.complete_checkpoints(run_dir) == []
    assert max(metrics_losses(run_dir)) == 4


def test_logs_on_a_full_disk_warn_once_and_training_reaches_the_end(pretrain_data, tmp_path):
    run_dir = tmp_path / "run"
    # Rows of 100 steps fill several 4 KiB pages: appends past the filled page fail.
    config = tiny_config(run_dir, pretrain_data, path=tmp_path / "run.yaml", trainer={"max_steps": 100},
                         data={"val_every_n_steps": 50},
                         checkpoint={"every_n_steps": 0, "save_at_end": False})
    with tmpfs(run_dir, 2048) as disk:
        # Leave 24 KiB: room for config.yaml, plan.json and the first rows, not for 100 steps of
        # rows, TensorBoard events and the loss plot. The run fills the disk itself.
        with open(disk / "ballast", "wb") as f:
            f.write(b"\0" * (os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize - 24 * 1024))
        proc = subprocess.run([sys.executable, "-m", "pretrain.cli", "pretrain", "--config", str(config)],
                              capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert proc.returncode == 0, proc.stderr[-3000:]
        lines = proc.stderr.splitlines()
        assert "`Trainer.fit` stopped: `max_steps=100` reached." in lines
        assert sum("metrics.csv: a write failed (" in line and "No space left on device" in line
                   for line in lines) == 1
        assert sum("tensorboard: a write failed (" in line for line in lines) <= 1
        assert 2 <= len(metrics_losses(disk)) < 100  # rows were lost, training was not
