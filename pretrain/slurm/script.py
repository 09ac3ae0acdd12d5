"""The sbatch script for a `SlurmJob`: plain bash a person can read, edit and resubmit.

Launcher choice (also written into every script): `srun` starts one task per GPU and
Lightning's `SLURMEnvironment` reads each task's rank from SLURM_PROCID / SLURM_LOCALID /
SLURM_NODEID. We do not put `torchrun` in between: with srun, SLURM's warning signal
(`--signal=USR1@...`, sent before the time limit) reaches every training process directly —
torchrun's agent does not forward SIGUSR1 to its workers — and SLURM alone owns process
lifetime, so a crashed rank ends the whole step (`--kill-on-bad-exit`) instead of leaving
the others hanging in a collective.
"""

from __future__ import annotations

import shlex
from datetime import datetime, timezone

from pretrain.slurm.job import SlurmJob

REQUEUE_CALLBACK = "pretrain.slurm.requeue.RequeueOnSignal"

_HEADER = """\
#!/bin/bash
# Written by `slm slurm submit` on {when}. Resubmit as is with: sbatch {script}
#
# Launch: srun starts {tasks} task(s) per node, one per GPU; Lightning's SLURMEnvironment takes
# each rank from SLURM_PROCID/SLURM_LOCALID/SLURM_NODEID and MASTER_ADDR/MASTER_PORT from the
# node list and the job id. No torchrun in between, so SLURM's signals reach every rank.
#
# Preemption and time limit: SLURM sends SIGUSR1 to every task {signal_seconds} s before it
# stops the job. {callback} then saves a checkpoint in
# RUN_DIR/checkpoints at the next optimizer step and requeues the job (scontrol requeue). The
# requeued job runs this script again, and `--ckpt_path last` resumes from the newest complete
# checkpoint; a job requeued without warning (node failure, `scontrol requeue`) resumes from
# the last periodic checkpoint. No user action is needed.
"""

_ENVIRONMENT = """\
# --- distributed training environment -------------------------------------------------------
# One intra-op thread pool per rank sized to its own CPUs, not to every core of the node.
export OMP_NUM_THREADS="${SLURM_CPUS_PER_TASK:-1}"
export PYTHONUNBUFFERED=1
# A rank stuck in a collective (dead peer, network fault) aborts the job instead of hanging
# until the time limit. With `fault.step_timeout_s` set, every rank's stacks go to RUN_DIR/hang/
# first and the job is requeued (end of this script), resuming from the last checkpoint.
export TORCH_NCCL_ASYNC_ERROR_HANDLING=1
# NCCL prints warnings only; set NCCL_DEBUG=INFO to see the rings/trees and transports chosen.
export NCCL_DEBUG="${NCCL_DEBUG:-WARN}"
# Cluster-specific (uncomment and adapt; ask your admins):
# export NCCL_SOCKET_IFNAME=ib0        # interface for NCCL's bootstrap and socket transport
# export NCCL_IB_HCA=mlx5              # InfiniBand adapters NCCL may use
# export NCCL_NET_GDR_LEVEL=PHB        # GPUDirect RDMA distance policy
# export NCCL_CROSS_NIC=1              # allow rings across NICs on multi-rail nodes
"""


def _q(value) -> str:
    return shlex.quote(str(value))


def sbatch_directives(job: SlurmJob) -> list[str]:
    """The `#SBATCH` lines, in the order sbatch documents them."""
    log = job.record_dir / ("%x-%A_%a.out" if job.is_array else "%x-%j.out")
    lines = [f"--job-name={job.job_name}", f"--nodes={job.nodes}",
             f"--ntasks-per-node={job.tasks_per_node}"]
    if job.gpus_per_node:
        lines.append(f"--gpus-per-node={job.gpus_per_node}")
    for flag, value in (("cpus-per-task", job.cpus_per_task), ("mem", job.mem),
                        ("partition", job.partition), ("time", job.time),
                        ("account", job.account), ("qos", job.qos),
                        ("constraint", job.constraint), ("array", job.array_spec())):
        if value is not None:
            lines.append(f"--{flag}={value}")
    lines += ["--requeue", f"--signal=USR1@{job.signal_seconds}", "--open-mode=append",
              f"--output={log}", f"--chdir={job.workdir}"]
    return [f"#SBATCH {line}" for line in lines]


def strategy_args(job: SlurmJob) -> list[str]:
    """LightningCLI overrides that size the run to the allocation (and shard across nodes).

    More than one node: the `fsdp2` strategy (pretrain/training/parallelize.py), whose default there is
    HSDP: parameters sharded within a node and replicated across nodes, so parameter
    all-gathers stay on the node's NVLink and only gradient reductions cross the network.
    ``hsdp=False`` shards over every GPU of every node instead (least memory, most traffic).
    """
    args = ["--trainer.num_nodes", str(job.nodes), "--trainer.devices", str(job.tasks_per_node)]
    if job.nodes > 1:
        args += ["--trainer.strategy", "pretrain.training.parallelize.FSDP2Strategy",
                 "--trainer.strategy.hsdp", "true" if job.hsdp else "false"]
    return args


def render_script(job: SlurmJob, script_path) -> str:
    """The full sbatch script for ``job`` (written to ``script_path`` by the caller)."""
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = [_HEADER.format(when=when, script=script_path, tasks=job.tasks_per_node,
                            signal_seconds=job.signal_seconds, callback=REQUEUE_CALLBACK)]
    parts.append("\n".join(sbatch_directives(job)) + "\n")
    parts.append("set -euo pipefail\n")
    if job.setup:
        parts.append("# --- site setup (from the SLURM template) ---\n" + "\n".join(job.setup)
                     + "\n")
    parts.append(_ENVIRONMENT)
    if job.env:
        parts.append("# --- from the SLURM template ---\n" +
                     "\n".join(f"export {k}={_q(v)}" for k, v in job.env.items()) + "\n")
    parts.append(_run_selection(job))
    parts.append(_launch(job))
    return "\n".join(parts)


def _run_selection(job: SlurmJob) -> str:
    head = ("# --- the run this task trains ---\n"
            "# The interpreter that ran `slm slurm submit`; edit if compute nodes use another.\n"
            f"PYTHON={_q(job.python)}\n")
    if not job.is_array:
        run = job.runs[0]
        return head + f"CONFIG={_q(run.config)}\nRUN_DIR={_q(run.run_dir)}\n"
    configs = "\n".join(f"  {_q(r.config)}" for r in job.runs)
    run_dirs = "\n".join(f"  {_q(r.run_dir)}" for r in job.runs)
    return (head + "# Array task i trains CONFIGS[i] into RUN_DIRS[i].\n"
            f"CONFIGS=(\n{configs}\n)\nRUN_DIRS=(\n{run_dirs}\n)\n"
            'CONFIG="${CONFIGS[$SLURM_ARRAY_TASK_ID]}"\n'
            'RUN_DIR="${RUN_DIRS[$SLURM_ARRAY_TASK_ID]}"\n')


def _launch(job: SlurmJob) -> str:
    args = [*strategy_args(job), f"--trainer.callbacks+={REQUEUE_CALLBACK}", "--ckpt_path", "last",
            *job.pretrain_args]
    arg_lines = "".join(f" \\\n    {line}" for line in _paired(args))
    return ("# --- launch: one task per GPU; auto-resume from RUN_DIR/checkpoints/last ---\n"
            'mkdir -p "$RUN_DIR"\n'
            'echo "job ${SLURM_JOB_ID} (restart ${SLURM_RESTART_COUNT:-0}) on '
            '${SLURM_JOB_NODELIST}: $CONFIG -> $RUN_DIR"\n'
            'started="$RUN_DIR/slurm/.started-${SLURM_JOB_ID}"\n'
            'mkdir -p "$RUN_DIR/slurm" && touch "$started"\n'
            'status=0\n'
            'srun --kill-on-bad-exit=1 "$PYTHON" -m pretrain.cli pretrain \\\n'
            '    --config "$CONFIG" \\\n'
            '    --trainer.default_root_dir "$RUN_DIR"' + arg_lines + " || status=$?\n"
            + _HANG_REQUEUE)


# `fault.step_timeout_s`: a hung step writes every rank's stacks to RUN_DIR/hang/ and exits
# non-zero. Requeue only then (a stack dump newer than this job's start), so that `--ckpt_path
# last` resumes; any other failure ends the job as it is, instead of looping.
_HANG_REQUEUE = """\
if [ "$status" -ne 0 ] && [ -n "$(find "$RUN_DIR/hang" -type f -size +0 -newer "$started" 2>/dev/null)" ]; then
  echo "hung step (stacks in $RUN_DIR/hang): requeueing job ${SLURM_JOB_ID}"
  scontrol requeue "${SLURM_JOB_ID}"
fi
rm -f "$started"
exit "$status"
"""


def _paired(args: list[str]) -> list[str]:
    """Shell-quoted arguments, one `--flag value` pair per line."""
    lines: list[str] = []
    for arg in args:
        pairs_with_last = lines and lines[-1].startswith("--") and " " not in lines[-1]
        if pairs_with_last and not arg.startswith("--"):
            lines[-1] += f" {_q(arg)}"
        else:
            lines.append(_q(arg))
    return lines
