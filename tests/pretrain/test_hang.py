"""`fault.step_timeout_s`: a step that does not finish in time (a slow step, or a collective
waiting on a stopped rank) leaves every live rank's Python stacks in RUN_DIR/hang/ and ends the
run with a non-zero status."""

import os
import signal
import subprocess
import sys
import time

from pathlib import Path

import pytest

from tests.fixtures.pretrain import metrics_losses, tiny_config

pytestmark = pytest.mark.slow

# No validation and no checkpoint inside the run: the stop always lands in a timed step.
QUIET = {"data": {"val_every_n_steps": 1000}, "checkpoint": {"every_n_steps": 1000, "save_at_end": False}}


def _children(pid: int) -> list[int]:
    """Process ids whose parent is ``pid`` (from /proc: Linux, like the CI)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state_and_ppid = stat.read_text().rsplit(")", 1)[1].split()[:2]
        except (OSError, IndexError):
            continue  # the process ended meanwhile
        if int(state_and_ppid[1]) == pid:
            children.append(int(stat.parent.name))
    return children


def _popen(config, log):
    """`slm pretrain` in the background; its output goes to a file (a pipe nobody reads could
    fill up and block the run, which would look like a hang)."""
    return subprocess.Popen([sys.executable, "-m", "pretrain.cli", "pretrain", "--config", str(config)],
                            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_a_step_slower_than_the_timeout_dumps_the_stacks_and_exits_non_zero(pretrain_data, tmp_path, run_pretrain):
    run_dir = tmp_path / "run"
    sleeper = {"class_path": "tests.pretrain.slow_step.SleepAtStep", "init_args": {"step": 3, "seconds": 600}}
    config = tiny_config(run_dir, pretrain_data, trainer={"max_steps": 6, "callbacks": [sleeper]},
                         fault={"step_timeout_s": 5}, **QUIET)
    with (tmp_path / "log.txt").open("w") as log:
        proc = _popen(config, log)
        proc.wait(timeout=400)
    assert proc.returncode == 1, (tmp_path / "log.txt").read_text()[-3000:]
    stacks = (run_dir / "hang" / "rank0.txt").read_text()
    assert "slow_step.py" in stacks and "in on_train_batch_start" in stacks
    assert sorted(metrics_losses(run_dir)) == [1, 2]  # it hung in step 3


def test_steps_within_the_timeout_leave_no_hang_directory(pretrain_data, tmp_path, run_pretrain):
    run_dir = tmp_path / "run"
    run_pretrain("--config", tiny_config(run_dir, pretrain_data, fault={"step_timeout_s": 120}))
    assert sorted(metrics_losses(run_dir)) == [1, 2, 3, 4]
    assert not (run_dir / "hang").exists()


def test_a_validation_longer_than_the_timeout_is_not_a_hang(pretrain_data, tmp_path, run_pretrain):
    run_dir = tmp_path / "run"
    sleeper = {"class_path": "tests.pretrain.slow_step.SleepAtStep",
               "init_args": {"step": 2, "seconds": 12, "in_validation": True}}
    run_pretrain("--config", tiny_config(run_dir, pretrain_data, trainer={"callbacks": [sleeper]},
                                         fault={"step_timeout_s": 4}, checkpoint=QUIET["checkpoint"]))
    assert sorted(metrics_losses(run_dir)) == [1, 2, 3, 4]
    assert not (run_dir / "hang").exists()


def test_a_stopped_rank_makes_the_other_dump_its_stacks_and_exit_non_zero(pretrain_data, tmp_path):
    run_dir = tmp_path / "run"
    config = tiny_config(run_dir, pretrain_data, trainer={"strategy": "fsdp2", "devices": 2, "max_steps": 100000},
                         fault={"step_timeout_s": 10}, **QUIET)
    log = (tmp_path / "log.txt").open("w")
    proc = _popen(config, log)
    rank1 = None
    try:
        deadline = time.monotonic() + 300
        while not (run_dir / "metrics.csv").exists() or max(metrics_losses(run_dir), default=0) < 3:
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "log.txt").read_text()[-3000:]
            time.sleep(0.2)
        (rank1,) = _children(proc.pid)  # Lightning's launcher starts rank 1 from rank 0
        os.kill(rank1, signal.SIGSTOP)
        stopped = time.monotonic()
        proc.wait(timeout=300)
        waited = time.monotonic() - stopped
    finally:
        if rank1 is not None:
            os.kill(rank1, signal.SIGKILL)  # a stopped process still takes SIGKILL
        if proc.poll() is None:
            proc.kill()
        log.close()
    assert proc.returncode != 0
    assert waited < 10 + 120  # the timeout, plus the step in flight, on a loaded machine
    stacks = (run_dir / "hang" / "rank0.txt").read_text()
    # rank 0's main thread waits in a collective of the run (where exactly depends on the moment)
    assert "pretrain/commands/pretrain.py" in stacks and "torch/distributed/" in stacks
    stopped_file = run_dir / "hang" / "rank1.txt"  # opened when armed; a stopped rank never writes
    assert not stopped_file.exists() or stopped_file.stat().st_size == 0
