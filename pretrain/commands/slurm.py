"""`slm slurm submit|status`: pretraining as SLURM jobs (see pretrain/slurm/)."""

from __future__ import annotations

import json

SUBMIT_FLAGS = ("nodes", "gpus_per_node", "ntasks_per_node", "cpus_per_task", "mem", "partition",
                "time", "account", "qos", "constraint", "array", "job_name", "signal_seconds")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("slurm", help="submit pretraining to SLURM; job status")
    sub = parser.add_subparsers(dest="slurm_command", metavar="ACTION",
                                parser_class=type(parser))
    sub.required = True

    p = sub.add_parser(
        "submit", help="write an sbatch script into the run dir and submit it",
        description="Write a readable sbatch script next to the run and submit it. Arguments "
                    "after `--` go to `slm pretrain` unchanged. Several --config files make a "
                    "job array: task i trains config i into its trainer.default_root_dir.")
    p.add_argument("--config", nargs="+", required=True, metavar="FILE.yaml",
                   help="pretrain config(s); several make a job array")
    p.add_argument("--template", metavar="FILE.yaml",
                   help="SLURM options from configs/slurm/*.yaml (flags override it)")
    p.add_argument("--run-dir",
                   help="run directory (one config; default: trainer.default_root_dir); for an "
                        "array: where its script and batch logs go (default: COMMON_PARENT/slurm)")
    p.add_argument("--nodes", type=int, help="nodes (default 1); > 1 uses HSDP")
    p.add_argument("--gpus-per-node", type=int, help="GPUs per node = tasks per node (default 0)")
    p.add_argument("--ntasks-per-node", type=int,
                   help="tasks per node for CPU jobs (with GPUs it equals --gpus-per-node)")
    p.add_argument("--cpus-per-task", type=int, help="CPUs per task (data loader workers + 1)")
    p.add_argument("--mem", help="memory per node, sbatch syntax (e.g. 400G)")
    p.add_argument("--partition", help="SLURM partition")
    p.add_argument("--time", help="time limit, e.g. 2-00:00:00")
    p.add_argument("--account", help="SLURM account")
    p.add_argument("--qos", help="quality of service")
    p.add_argument("--constraint", help="node features, e.g. h100")
    p.add_argument("--array",
                   help="array spec over the configs (default 0-N-1), e.g. 0-7%%2 or %%2")
    p.add_argument("--job-name", help="job name (default slm-pretrain)")
    p.add_argument("--signal-seconds", type=int,
                   help="seconds before the time limit that SIGUSR1 arrives (default 120)")
    p.add_argument("--no-hsdp", action="store_true",
                   help="multi-node: shard across all GPUs instead of HSDP")
    p.add_argument("--dry-run", action="store_true", help="write and print the script only")
    p.add_argument("pretrain_args", nargs="*", metavar="-- PRETRAIN_ARGS",
                   help="extra `slm pretrain` arguments, after `--`")
    p.set_defaults(func=run_submit)

    s = sub.add_parser("status", help="jobs, states, last checkpoint and tokens seen of a run")
    s.add_argument("run_dir", metavar="RUN_DIR")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=run_status)


def build_job(args):
    """A SlurmJob from parsed flags (template values first, flags over them)."""
    from pretrain.slurm.job import SlurmJob, read_template, run_from_config

    options = read_template(args.template) if args.template else {}
    for name in SUBMIT_FLAGS:
        value = getattr(args, name)
        if value is not None:
            options[name] = value
    if args.no_hsdp:
        options["hsdp"] = False
    if len(args.config) == 1:
        runs = [run_from_config(args.config[0], args.run_dir)]
        script_dir = None
    else:
        runs = [run_from_config(config) for config in args.config]
        script_dir = _array_dir(args.run_dir, runs)
    return SlurmJob(runs=runs, script_dir=script_dir, pretrain_args=list(args.pretrain_args),
                    **options)


def _array_dir(run_dir, runs):
    """Where an array's script and batch logs go: --run-dir, else <runs' common parent>/slurm."""
    import os
    from pathlib import Path

    if run_dir is not None:
        return Path(run_dir).resolve()
    return Path(os.path.commonpath([str(r.run_dir) for r in runs])) / "slurm"


def run_submit(args) -> int:
    from pretrain.slurm.submit import submit, write_script

    job = build_job(args)
    if args.dry_run:
        path = write_script(job)
        print(path.read_text())
        print(f"# dry run: script written to {path}; not submitted")
        return 0
    job_id, path = submit(job)
    print(f"submitted job {job_id}: {path}")
    log_name = f"{job.job_name}-{job_id}_<task>.out" if job.is_array else \
        f"{job.job_name}-{job_id}.out"
    print(f"log:    {job.record_dir / log_name}")
    for run in job.runs:
        print(f"status: slm slurm status {run.run_dir}")
    return 0


def run_status(args) -> int:
    from pretrain.slurm.status import format_status, run_status as status_of

    status = status_of(args.run_dir)
    print(json.dumps(status, indent=2) if args.json else format_status(status))
    return 0
