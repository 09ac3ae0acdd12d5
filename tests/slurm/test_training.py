"""Pretraining as real SLURM jobs on the test cluster: 2 CPU tasks (gloo), preemption, arrays.

The tiny model and data come from tests/fixtures/pretrain.py. Each job is submitted with
`slm slurm submit` exactly as a user would (template configs/slurm/cpu-2task.yaml).
"""

import csv
import re
from pathlib import Path

import pytest
import yaml

from tests.fixtures.pretrain import metrics_losses, tiny_config
from tests.slurm.jobs import (CPU_TEMPLATE, job_log, last_logged_step, run_slm, submit, wait_for,
                              wait_until_done)

pytestmark = pytest.mark.slurm

# Long enough (a few seconds) that a signal sent after step 3 lands mid-run.
MAX_STEPS = 64
CHECKPOINT_EVERY = 16
TOKENS_PER_STEP = 256  # tiny_config's data.global_batch_tokens


def two_task_config(run_dir: Path, data_dir: Path, **checkpoint) -> Path:
    """A 2-rank CPU run (FSDP2 over gloo: sharded checkpoints) of the tiny model."""
    return tiny_config(run_dir, data_dir,
                       trainer={"devices": 2, "strategy": "fsdp2", "max_steps": MAX_STEPS},
                       model={"mixed_precision": "fp32"},
                       data={"val_every_n_steps": CHECKPOINT_EVERY},
                       checkpoint={"every_n_steps": CHECKPOINT_EVERY, "keep_last": 0,
                                   **checkpoint})


@pytest.fixture(scope="module")
def uninterrupted(slurm_cluster, pretrain_data, tmp_path_factory):
    """A 2-task SLURM job trained start to finish: (run_dir, job_id, scontrol fields)."""
    run_dir = tmp_path_factory.mktemp("slurm-straight") / "run"
    job_id = submit("--template", CPU_TEMPLATE, "--config",
                    two_task_config(run_dir, pretrain_data))
    return run_dir, job_id, wait_until_done(slurm_cluster, job_id, run_dir)


def test_two_task_job_matches_the_same_run_without_slurm(uninterrupted, pretrain_data, tmp_path,
                                                         run_pretrain):
    slurm_run, _, _ = uninterrupted
    local_run = tmp_path / "local"
    run_pretrain("--config", two_task_config(local_run, pretrain_data))
    on_slurm, local = metrics_losses(slurm_run), metrics_losses(local_run)
    assert sorted(on_slurm) == list(range(1, MAX_STEPS + 1))
    assert on_slurm.keys() == local.keys()
    for step in local:
        assert on_slurm[step] == pytest.approx(local[step], abs=1e-6), step


def test_job_ran_two_ranks_under_srun(uninterrupted):
    run_dir, job_id, fields = uninterrupted
    assert fields["NumTasks"] == "2" and fields["Restarts"] == "0"
    assert f"job {job_id} (restart 0)" in job_log(run_dir)


def test_status_reports_job_checkpoint_and_tokens(uninterrupted):
    run_dir, job_id, _ = uninterrupted
    out = run_slm("slurm", "status", run_dir).stdout
    assert f"job {job_id}: COMPLETED" in out
    assert f"step-{MAX_STEPS:06d} (step {MAX_STEPS}, tokens seen {MAX_STEPS * TOKENS_PER_STEP:,})" \
        in out


def test_warning_signal_checkpoints_requeues_and_resumes_exactly(
        slurm_cluster, uninterrupted, pretrain_data, tmp_path):
    run_dir = tmp_path / "run"
    # No periodic checkpoints: the only one before the requeue is the one the signal asks for.
    job_id = submit("--template", CPU_TEMPLATE, "--config",
                    two_task_config(run_dir, pretrain_data, every_n_steps=1000))
    wait_for(lambda: last_logged_step(run_dir) >= 3, "step 3", 180)
    signalled = slurm_cluster.run("scancel", "--signal=USR1", job_id)
    assert signalled.returncode == 0, signalled.stderr
    fields = wait_until_done(slurm_cluster, job_id, run_dir)

    assert int(fields["Restarts"]) == 1
    log = job_log(run_dir)
    assert "SLURM warning signal SIGUSR1: checkpointing at step" in log
    assert f"job {job_id} (restart 1)" in log and "resuming from" in log
    assert not list(run_dir.glob("hpc_ckpt_*.ckpt"))  # Lightning's own requeue did not run
    reference = metrics_losses(uninterrupted[0])
    resumed = metrics_losses(run_dir)
    assert resumed[MAX_STEPS] == pytest.approx(reference[MAX_STEPS], abs=1e-6)
    assert resumed == pytest.approx(reference, abs=1e-6)


def test_scontrol_requeue_resumes_from_last_periodic_checkpoint(
        slurm_cluster, uninterrupted, pretrain_data, tmp_path):
    run_dir = tmp_path / "run"
    job_id = submit("--template", CPU_TEMPLATE, "--config",
                    two_task_config(run_dir, pretrain_data))
    first = run_dir / "checkpoints" / f"step-{CHECKPOINT_EVERY:06d}" / "meta.json"
    wait_for(first.exists, "the first periodic checkpoint", 180)
    requeued = slurm_cluster.run("scontrol", "requeue", job_id)
    assert requeued.returncode == 0, requeued.stderr
    fields = wait_until_done(slurm_cluster, job_id, run_dir)

    assert int(fields["Restarts"]) == 1
    assert "resuming from" in job_log(run_dir)
    reference = metrics_losses(uninterrupted[0])
    assert metrics_losses(run_dir)[MAX_STEPS] == pytest.approx(reference[MAX_STEPS], abs=1e-6)


def test_sweep_runs_as_a_three_task_job_array_and_collects(slurm_cluster, pretrain_data, tmp_path):
    base = tiny_config(tmp_path / "base", pretrain_data, checkpoint={"every_n_steps": 25})
    recipe = tmp_path / "mini-sweep.yaml"
    recipe.write_text(yaml.safe_dump({
        "kind": "chinchilla", "base_config": str(base), "models": [{"n_layers": 1}],
        "tokens": [12800, 15360, 17920],  # 50, 60 and 70 steps of 256 tokens
        "global_batch_tokens": 256, "micro_batch_size": 4, "lr": 3e-3, "min_steps": 50,
        "val_points": 2}))
    sweep = tmp_path / "sweep"
    run_slm("sweep", "plan", "--config", recipe, "--output", sweep)
    submitted = run_slm("sweep", "run", sweep, "--slurm", "--slurm-args",
                        f"--template {CPU_TEMPLATE} --ntasks-per-node 1 --job-name mini-sweep")
    job_id = re.search(r"submitted job (\d+)", submitted.stdout).group(1)
    wait_until_done(slurm_cluster, job_id, sweep, timeout_s=300)

    collected = run_slm("sweep", "collect", sweep)
    assert "(3 runs)" in collected.stdout
    with (sweep / "results.csv").open() as f:
        assert len(list(csv.DictReader(f))) == 3
    run_dirs = sorted((sweep / "runs").iterdir())
    statuses = [run_slm("slurm", "status", d).stdout for d in run_dirs]
    assert sorted(re.search(r"job (\d+_\d)", s).group(1) for s in statuses) == \
        [f"{job_id}_{i}" for i in range(3)]
    assert all("COMPLETED" in s for s in statuses)
