"""Checkpoint and requeue when SLURM warns that the job is about to stop.

The sbatch script asks SLURM for SIGUSR1 some seconds before the time limit (`--signal`), and
adds this callback to the trainer (`--trainer.callbacks+=pretrain.slurm.requeue.RequeueOnSignal`).
Lightning's own SLURM auto-requeue would save `hpc_ckpt_N.ckpt` from inside the signal handler,
mid-step and outside our checkpoint layout. Instead:

1. the signal handler only records that the signal arrived (signal-safe, any moment);
2. at the next optimizer-step boundary the ranks agree (any rank signalled → all act) and ask
   the run's `PeriodicCheckpoint` for a checkpoint-and-stop (`request_checkpoint(stop=True)`):
   it saves a complete checkpoint in RUN_DIR/checkpoints with the same code and at a step
   boundary like a periodic save, so resuming from it is exact, then stops training. `slm
   pretrain` appends its `checkpoint:` callback after `trainer.callbacks`, so this callback runs
   first and the save happens at that same step boundary (in the other order: one step later);
3. when training has ended (all checkpoint writes done) rank 0 runs
   `scontrol requeue $SLURM_JOB_ID`; SLURM restarts the batch script, whose
   `--ckpt_path last` resumes from that checkpoint.

The handler is installed when the callback is built, before `Trainer.fit` registers Lightning's
signal handlers; Lightning leaves a signal that already has a handler alone, so its hpc
checkpointing never runs.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess

from lightning.pytorch import Callback

from pretrain.training.checkpoint import layout

log = logging.getLogger(__name__)


class RequeueOnSignal(Callback):
    """On ``signal_name`` (default SIGUSR1) under SLURM: checkpoint at the next step, requeue,
    stop. Outside SLURM (no SLURM_JOB_ID) the callback does nothing."""

    def __init__(self, signal_name: str = "SIGUSR1", requeue: bool = True):
        self.signum = signal.Signals[signal_name]
        self.requeue = requeue
        self.signal_received = False
        self.requeue_pending = False
        self._saver = None  # the PeriodicCheckpoint that writes the checkpoint; set at train start
        self.job_id = os.environ.get("SLURM_JOB_ID")
        if self.job_id is not None:
            signal.signal(self.signum, self._on_signal)

    def _on_signal(self, signum, frame) -> None:
        self.signal_received = True

    def on_train_start(self, trainer, pl_module) -> None:
        self._saver = self._checkpoint_callback(trainer)
        if self._saver not in trainer.callbacks:
            self._saver.on_train_start(trainer, pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        """The end of an optimizer step (one training batch is one step)."""
        step = trainer.global_step
        if self.job_id is None or self.requeue_pending:
            return  # not under SLURM, or already acting
        if not trainer.strategy.reduce_boolean_decision(self.signal_received, all=False):
            return
        if trainer.is_global_zero:
            log.info("SLURM warning signal %s: checkpointing at step %d and requeueing job %s",
                     self.signum.name, step, self.job_id)
        # Every rank requests at the same step (after the all-reduce), so all save together.
        self._saver.request_checkpoint(stop=True)
        self.requeue_pending = True
        if self._saver not in trainer.callbacks:  # our on-demand saver: its hooks run from here
            self._saver.on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_train_end(self, trainer, pl_module) -> None:
        # Requeue only now: SLURM kills the job when it requeues it, and every checkpoint
        # callback has finished writing by the end of training.
        if self.requeue_pending and self.requeue and trainer.is_global_zero:
            self._requeue()

    @staticmethod
    def _checkpoint_callback(trainer):
        from pretrain.training.checkpoint.callback import PeriodicCheckpoint

        for callback in trainer.callbacks:
            if isinstance(callback, PeriodicCheckpoint):
                return callback
        # No periodic checkpoints configured: a saver that only ever saves on request.
        return PeriodicCheckpoint(every_n_steps=0, keep_last=0, save_at_end=False)

    def _requeue(self) -> None:
        out = subprocess.run(["scontrol", "requeue", self.job_id], capture_output=True, text=True)
        if out.returncode == 0:
            log.info("requeued SLURM job %s; it resumes from %s", self.job_id, layout.LAST_LINK)
        else:
            log.warning("scontrol requeue %s failed (%d): %s", self.job_id, out.returncode,
                        out.stderr.strip())
