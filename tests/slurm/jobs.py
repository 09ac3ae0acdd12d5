"""Submitting `slm slurm submit` jobs to the test cluster and waiting for them."""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
import time
from pathlib import Path

FINAL_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY",
                "BOOT_FAIL", "DEADLINE", "PREEMPTED"}
REPO = Path(__file__).resolve().parents[2]
CPU_TEMPLATE = REPO / "configs" / "slurm" / "cpu-2task.yaml"


def run_slm(*args, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    """`slm ARGS` as a subprocess (like the `slm` fixture, usable from module fixtures)."""
    proc = subprocess.run([sys.executable, "-m", "pretrain.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=dict(os.environ))
    if check and proc.returncode != 0:
        raise AssertionError(f"slm {' '.join(map(str, args))} failed ({proc.returncode}):\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc


def submit(*args) -> str:
    """`slm slurm submit ARGS`; returns the job id (fails the test with the output otherwise)."""
    proc = run_slm("slurm", "submit", *args)
    match = re.search(r"submitted job (\d+)", proc.stdout)
    assert match, proc.stdout
    return match.group(1)


def job_fields(cluster, job_id: str) -> dict[str, str]:
    """`scontrol show job -o` as a dict (empty when SLURM no longer knows the job)."""
    out = cluster.run("scontrol", "show", "job", "-o", job_id, timeout=30).stdout
    return dict(kv.split("=", 1) for kv in out.split() if "=" in kv)


def job_log(run_dir: Path) -> str:
    logs = sorted((Path(run_dir) / "slurm").glob("*.out"))
    return "\n".join(p.read_text(errors="replace") for p in logs)


def last_logged_step(run_dir: Path) -> int:
    """Highest step in RUN_DIR/metrics.csv so far (0 before the first row). Plain csv, no
    Lightning import: this runs in a polling loop that must react within a fraction of a second."""
    path = Path(run_dir) / "metrics.csv"
    if not path.exists():
        return 0
    with path.open(newline="") as f:
        return max((int(row["step"]) for row in csv.DictReader(f) if row.get("step")), default=0)


def wait_for(condition, what: str, timeout_s: float, interval_s: float = 0.2):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")


def wait_until_done(cluster, job_id: str, run_dir: Path, timeout_s: float = 240) -> dict:
    """Wait for a job (all array tasks when ``job_id`` is an array) to end; assert COMPLETED."""
    def states():
        out = cluster.run("scontrol", "show", "job", "-o", job_id, timeout=30).stdout
        found = re.findall(r"JobState=(\S+)", out)
        return found if found and all(s in FINAL_STATES for s in found) else None

    try:
        found = wait_for(states, f"job {job_id} to finish", timeout_s, interval_s=1.0)
    except AssertionError:
        raise AssertionError(f"job {job_id} did not finish: {job_fields(cluster, job_id)}\n"
                             f"{job_log(run_dir)[-4000:]}\n{cluster.log_tail('slurmctld', 20)}")
    assert set(found) == {"COMPLETED"}, (found, job_log(run_dir)[-6000:])
    return job_fields(cluster, job_id)
