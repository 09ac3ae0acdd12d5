"""`slm slurm status RUN_DIR`: the run's SLURM jobs, their states, and how far training got.

Job state comes from `squeue` while SLURM still holds the job, then `sacct` (needs the
accounting daemon, which many small clusters lack), then `scontrol show job` (finished jobs
stay visible for MinJobAge seconds). A job none of them knows is reported as `UNKNOWN`.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from pretrain.errors import PretrainError
from pretrain.slurm.submit import read_submissions


def _run(argv: list[str]) -> str | None:
    """stdout of a SLURM client command, or None when it is missing or fails."""
    if shutil.which(argv[0]) is None:
        return None
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return None
    return out.stdout if out.returncode == 0 else None


def _scontrol_fields(job_id: str) -> dict[str, str]:
    text = _run(["scontrol", "show", "job", "-o", job_id]) or ""
    return dict(kv.split("=", 1) for kv in text.split() if "=" in kv)


def job_state(job_id: str) -> dict:
    """{"job_id", "state", "source", "restarts"} for one job (array task ids like 12_3)."""
    queued = (_run(["squeue", "-h", "-j", job_id, "-o", "%T"]) or "").split()
    fields = _scontrol_fields(job_id)
    restarts = int(fields["Restarts"]) if fields.get("Restarts", "").isdigit() else None
    if queued:
        return {"job_id": job_id, "state": queued[0], "source": "squeue", "restarts": restarts}
    accounted = (_run(["sacct", "-n", "-X", "-P", "-j", job_id, "-o", "State"]) or "").split()
    if accounted:
        return {"job_id": job_id, "state": accounted[-1], "source": "sacct", "restarts": restarts}
    if "JobState" in fields:
        return {"job_id": job_id, "state": fields["JobState"], "source": "scontrol",
                "restarts": restarts}
    return {"job_id": job_id, "state": "UNKNOWN", "source": None, "restarts": None}


def run_status(run_dir: str | Path) -> dict:
    """Jobs (with states), newest complete checkpoint, its step and tokens seen, for a run.

    Raises PretrainError when ``run_dir`` does not exist or holds neither job records nor
    checkpoints.
    """
    from pretrain.training.checkpoint.layout import latest_checkpoint, read_checkpoint_meta

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise PretrainError(f"run directory not found ({run_dir})")
    submissions = read_submissions(run_dir)
    checkpoint = latest_checkpoint(run_dir)
    if not submissions and checkpoint is None:
        raise PretrainError(f"no SLURM job recorded and no checkpoint in {run_dir} "
                            "(submit with `slm slurm submit`)")
    jobs = [{**job_state(s["job_id"]), "submitted": s.get("submitted"), "script": s.get("script")}
            for s in submissions]
    status = {"run_dir": str(run_dir), "jobs": jobs, "checkpoint": None, "step": None,
              "tokens_seen": None}
    if checkpoint is not None:
        meta = read_checkpoint_meta(checkpoint)
        status.update(checkpoint=str(checkpoint), step=meta.get("step"),
                      tokens_seen=meta.get("tokens_seen"))
    return status


def format_status(status: dict) -> str:
    """Human-readable lines for `run_status`'s result."""
    lines = [f"run: {status['run_dir']}"]
    if not status["jobs"]:
        lines.append("jobs: none recorded")
    for job in status["jobs"]:
        restarts = f", restarts {job['restarts']}" if job["restarts"] else ""
        source = f" (from {job['source']})" if job["source"] else ""
        lines.append(f"job {job['job_id']}: {job['state']}{source}{restarts}, "
                     f"submitted {job['submitted']}")
    if status["checkpoint"] is None:
        lines.append("checkpoint: none yet")
    else:
        tokens = status["tokens_seen"]
        lines.append(f"checkpoint: {status['checkpoint']} (step {status['step']}, "
                     f"tokens seen {tokens:,})" if isinstance(tokens, int) else
                     f"checkpoint: {status['checkpoint']} (step {status['step']})")
    return "\n".join(lines)
