"""Write a job's sbatch script next to its run(s) and submit it.

Nothing half-done: the script is written under a temporary name and renamed only once sbatch
accepted it; when sbatch refuses, the script and the directories we created are removed and
its own error comes back as one line. Each submission is appended to
`RUN_DIR/slurm/jobs.jsonl` (one JSON object per line) of every run it trains, which is what
`slm slurm status RUN_DIR` reads.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
from datetime import datetime, timezone
from pathlib import Path

from pretrain.errors import PretrainError
from pretrain.slurm.job import SlurmJob
from pretrain.slurm.script import render_script
from tokenizer.atomic import atomic_file, write_atomic

log = logging.getLogger(__name__)

JOBS_FILE = "jobs.jsonl"


def require_tool(name: str) -> str:
    """Absolute path of a SLURM client command, or PretrainError when it is not installed."""
    path = shutil.which(name)
    if path is None:
        raise PretrainError(f"{name} not found on PATH (is SLURM installed?)")
    return path


def _one_line(stderr: str) -> str:
    """sbatch's own complaint, one line: its last `error:` message (else its last line)."""
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    errors = [line.split("error:", 1)[1].strip() for line in lines if "error:" in line]
    if errors:
        return "; ".join(dict.fromkeys(errors))
    return lines[-1] if lines else "no message"


def partition_gres(partition: str | None) -> dict[str, str]:
    """Partition name -> generic resources its nodes offer (`sinfo -o "%P %G"`), e.g. gpu:8.

    ``partition`` None means the default partition (sinfo marks it with `*`); the result then
    maps "" to it as well.
    """
    sinfo = require_tool("sinfo")
    out = subprocess.run([sinfo, "-h", "-o", "%P %G"], capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise PretrainError(f"sinfo failed: {_one_line(out.stderr)}")
    gres: dict[str, str] = {}
    for line in out.stdout.splitlines():
        if not line.strip():
            continue
        name, _, resources = line.strip().partition(" ")
        default = name.endswith("*")
        name = name.rstrip("*")
        gres[name] = ",".join(filter(None, [gres.get(name), resources.strip()]))
        if default:
            gres[""] = gres[name]
    return gres


def check_gpus_available(job: SlurmJob) -> None:
    """GPUs requested from a partition with no `gpu` gres: PretrainError before submitting."""
    if job.gpus_per_node == 0:
        return
    gres = partition_gres(job.partition)
    key = job.partition or ""
    if key not in gres:
        return  # unknown partition: sbatch names the problem in its own words
    if "gpu" not in gres[key]:
        name = job.partition or "(the default)"
        raise PretrainError(f"--gpus-per-node {job.gpus_per_node} but partition {name} has no GPUs "
                            f"(sinfo gres: {gres[key] or '(null)'}); pick a GPU partition "
                            "with --partition or use --gpus-per-node 0")


def _script_path(job: SlurmJob) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return job.record_dir / f"{job.job_name}-{stamp}.sbatch"


def _make_dirs(paths) -> list[Path]:
    """mkdir -p each path; return the directories that did not exist before (to undo)."""
    created = []
    for path in paths:
        missing = []
        p = Path(path)
        while not p.exists():
            missing.append(p)
            p = p.parent
        Path(path).mkdir(parents=True, exist_ok=True)
        created += missing
    return created


def write_script(job: SlurmJob) -> Path:
    """Validate ``job`` and write its script (dry run); returns the script path."""
    job.validate()
    created = _make_dirs([job.record_dir])
    path = _script_path(job)
    try:
        write_atomic(path, render_script(job, path), permissions=0o755)
    except OSError:
        for d in reversed(created):
            shutil.rmtree(d, ignore_errors=True)
        raise
    return path


def submit(job: SlurmJob) -> tuple[str, Path]:
    """Submit ``job`` with sbatch; returns (job id, script path).

    Raises PretrainError (nothing written, nothing submitted) when sbatch is missing, the
    GPUs asked for do not exist in the partition, or sbatch refuses the job.
    """
    job.validate()
    sbatch = require_tool("sbatch")
    check_gpus_available(job)
    created = _make_dirs([job.record_dir] + [r.run_dir / "slurm" for r in job.runs])
    path = _script_path(job)
    try:
        # sbatch reads the script under its temporary name; it takes `path` only once the job
        # is accepted, so a refused or interrupted submission leaves no script behind.
        with atomic_file(path, permissions=0o755) as script:
            script.write(render_script(job, path))
            script.flush()
            out = subprocess.run([sbatch, "--parsable", script.name], capture_output=True,
                                 text=True, timeout=120, cwd=job.workdir)
            if out.returncode != 0:
                raise PretrainError(f"sbatch refused the job: {_one_line(out.stderr)}")
            job_id = out.stdout.strip().split(";")[0]
            if not job_id.isdigit():
                raise PretrainError(f"sbatch printed no job id: {out.stdout.strip()!r}")
    except BaseException:
        for d in reversed(created):
            shutil.rmtree(d, ignore_errors=True)
        raise
    record_submission(job, job_id, path)
    return job_id, path


def record_submission(job: SlurmJob, job_id: str, script: Path) -> None:
    """Append this submission to `slurm/jobs.jsonl` in the record dir and every run dir."""
    when = datetime.now(timezone.utc).isoformat(timespec="seconds")
    for index, run in enumerate(job.runs):
        entry = {"job_id": f"{job_id}_{index}" if job.is_array else job_id,
                 "array_job_id": job_id if job.is_array else None,
                 "array_task_id": index if job.is_array else None,
                 "submitted": when, "script": str(script), "config": str(run.config),
                 "nodes": job.nodes, "tasks_per_node": job.tasks_per_node,
                 "gpus_per_node": job.gpus_per_node}
        with open(run.run_dir / "slurm" / JOBS_FILE, "a") as f:
            f.write(json.dumps(entry) + "\n")
    if job.is_array and job.record_dir.resolve() not in {(r.run_dir / "slurm").resolve()
                                                         for r in job.runs}:
        with open(job.record_dir / JOBS_FILE, "a") as f:
            f.write(json.dumps({"job_id": job_id, "submitted": when, "script": str(script),
                                "runs": [str(r.run_dir) for r in job.runs]}) + "\n")


def read_submissions(run_dir: str | Path) -> list[dict]:
    """The submissions recorded for a run, oldest first ([] when never submitted)."""
    path = Path(run_dir) / "slurm" / JOBS_FILE
    if not path.exists():
        return []
    entries = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            raise PretrainError(f"corrupt job record ({path}:{number})") from None
    return entries
