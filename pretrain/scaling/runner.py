"""`slm sweep run`: train the planned runs, here one after another or as a SLURM job array.

A run is *finished* when its ``RUN_DIR/metrics.csv`` holds a validation loss at (or after) its
planned last step: the plan makes every run's validation interval divide its step count, so a
run that completed always validated at its last step. Finished runs are skipped; any other run
is started with ``slm pretrain --config DIR/configs/<run>.yaml --ckpt_path last``, which resumes
from the run's newest complete checkpoint when it has one (an interrupted run) and starts fresh
otherwise. Each run's console output goes to ``RUN_DIR/train.log``. ``--jobs N`` trains up to N
runs at once (CPU sweeps of tiny models; see ``run_sweep``).
"""

from __future__ import annotations

import csv
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pretrain
from pretrain.errors import PretrainError
from pretrain.scaling.plan import read_plan

TRAIN_LOG = "train.log"


def default_train_command() -> list[str]:
    """This interpreter's `slm pretrain` (works without the package being pip-installed)."""
    return [sys.executable, "-m", "pretrain.cli", "pretrain"]


def final_validation(run_dir: Path) -> list[dict]:
    """Validation rows of RUN_DIR/metrics.csv as dicts with int ``step`` and float
    ``val_loss`` (and ``tokens_seen`` when logged), in file order; [] if there is none."""
    metrics = Path(run_dir) / "metrics.csv"
    if not metrics.is_file():
        return []
    rows = []
    with metrics.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if (row.get("val_loss") or "").strip():
                rows.append({"step": int(float(row["step"])), "val_loss": float(row["val_loss"]),
                             "tokens_seen": row.get("tokens_seen") or ""})
    return rows


def is_finished(run_dir: Path, steps: int) -> bool:
    return any(r["step"] >= steps for r in final_validation(run_dir))


def _selected(rows: list[dict], runs: list[str] | None, sweep_dir) -> list[dict]:
    if not runs:
        return rows
    known = {r["run"] for r in rows}
    unknown = [r for r in runs if r not in known]
    if unknown:
        raise PretrainError(f"unknown run {unknown[0]!r} (--runs; runs of {sweep_dir}: "
                            f"{', '.join(sorted(known))})")
    return [r for r in rows if r["run"] in runs]


def _cost(row: dict) -> float:
    """A run's planned training FLOPs (its tokens when the plan predates that column)."""
    try:
        return float(row.get("training_flops") or row["tokens"])
    except (TypeError, ValueError):
        return 0.0


def run_sweep(sweep_dir, runs: list[str] | None = None,
              train_command: list[str] | None = None, jobs: int = 1) -> int:
    """Train every selected run that is not finished, up to ``jobs`` at a time; PretrainError
    naming the failed runs.

    With ``jobs`` > 1 the runs start longest first (planned training FLOPs), and each gets
    ``OMP_NUM_THREADS`` = CPU cores / jobs (unless the caller set it): the tiny models of a CPU sweep use a second thread poorly, so two one-thread runs
    side by side finish sooner than two two-thread runs in turn."""
    sweep_dir = Path(sweep_dir)
    if jobs < 1:
        raise PretrainError(f"--jobs must be at least 1, got {jobs}")
    rows = _selected(read_plan(sweep_dir), runs, sweep_dir)
    command = train_command or default_train_command()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(Path(pretrain.__file__).resolve().parent.parent), os.environ.get("PYTHONPATH", "")])}
    if jobs > 1 and "OMP_NUM_THREADS" not in os.environ:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // jobs))
    failed, running = [], []
    todo = list(enumerate(rows, start=1))
    if jobs > 1:
        # Longest first (LPT): a long run started last would leave the other slots idle at the
        # end; started first, the short runs fill in around it.
        todo.sort(key=lambda item: -_cost(item[1]))

    def finish(process, row, prefix, started, train_log) -> None:
        train_log.close()
        run_dir, steps = sweep_dir / "runs" / row["run"], int(row["steps"])
        elapsed = time.perf_counter() - started
        if process.returncode != 0:
            failed.append(row["run"])
            print(f"{prefix}: FAILED (exit {process.returncode}) after {elapsed:.0f} s; see "
                  f"{run_dir / TRAIN_LOG}", flush=True)
        elif not is_finished(run_dir, steps):
            failed.append(row["run"])
            print(f"{prefix}: exited 0 but metrics.csv has no validation at step {steps}",
                  flush=True)
        else:
            loss = final_validation(run_dir)[-1]["val_loss"]
            print(f"{prefix}: done in {elapsed:.0f} s, final val loss {loss:.4f}", flush=True)

    try:
        while todo or running:
            while todo and len(running) < jobs:
                position, row = todo.pop(0)
                run_dir, steps = sweep_dir / "runs" / row["run"], int(row["steps"])
                prefix = f"[{position}/{len(rows)}] {row['run']}"
                if is_finished(run_dir, steps):
                    print(f"{prefix}: finished already, skipped", flush=True)
                    continue
                run_dir.mkdir(parents=True, exist_ok=True)
                held = " (held out)" if row.get("holdout") == "1" else ""
                print(f"{prefix}{held}: training N={int(row['params']):,} "
                      f"({int(row['non_embedding_params']):,} non-embedding) on "
                      f"D={int(row['tokens']):,} tokens ({steps} steps); "
                      f"log {run_dir / TRAIN_LOG}", flush=True)
                train_log = (run_dir / TRAIN_LOG).open("a", encoding="utf-8")
                process = subprocess.Popen(
                    [*command, "--config", row["config"], "--ckpt_path", "last"],
                    stdout=train_log, stderr=subprocess.STDOUT, env=env)
                running.append((process, row, prefix, time.perf_counter(), train_log))
            if running:
                done = [r for r in running if r[0].poll() is not None]
                if not done:
                    time.sleep(0.2)
                for item in done:
                    running.remove(item)
                    finish(*item)
    finally:  # interrupted (Ctrl-C, a signal): stop the runs started here, they resume later
        for process, *_ in running:
            process.terminate()
        for process, *_ in running:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
    if failed:
        raise PretrainError(f"{len(failed)} run(s) failed: {', '.join(failed)}; their "
                            f"{TRAIN_LOG} says why; re-run `slm sweep run {sweep_dir}` to resume")
    return 0


def submit_sweep(sweep_dir, runs: list[str] | None = None, slurm_args: str = "") -> int:
    """Submit the unfinished runs as one job array via `slm slurm submit` (one config per
    task; each task resumes its own run from its checkpoints when requeued)."""
    sweep_dir = Path(sweep_dir)
    rows = [r for r in _selected(read_plan(sweep_dir), runs, sweep_dir)
            if not is_finished(sweep_dir / "runs" / r["run"], int(r["steps"]))]
    if not rows:
        print(f"all runs of {sweep_dir} are finished; nothing to submit")
        return 0
    command = [sys.executable, "-m", "pretrain.cli", "slurm", "submit",
               "--config", *[r["config"] for r in rows], "--run-dir", str(sweep_dir / "slurm"),
               *shlex.split(slurm_args)]
    return subprocess.run(command).returncode
