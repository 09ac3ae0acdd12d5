"""The Lightning callback that writes checkpoints in the layout of ``pretrain/training/checkpoint/layout.py``.

Every ``every_n_steps`` optimizer steps, at each token milestone and at the end of training it
saves Lightning's full training state (model, optimizer, lr scheduler, loop counters, data
position, RNG states) with ``trainer.save_checkpoint`` — a single file on one device or DDP, a
torch.distributed.checkpoint directory under FSDP2 — into a temporary directory, adds
``meta.json`` and renames the directory into place. Then it applies the retention policy and
redraws the loss plot.

A write that fails (a full disk: ``checkpoint.on_error``) leaves no partial directory and keeps
every earlier checkpoint; ``continue`` trains on and tries again at the next interval, ``stop``
ends the run with an error (a scheduler requeues it); a final checkpoint that cannot be written
is always an error. SIGTERM asks for a checkpoint at the next step boundary, then a clean stop.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Literal

import yaml
from lightning.pytorch import Callback

from pretrain.errors import PretrainError
from pretrain.training.checkpoint import layout
from pretrain.training.plan import PLAN_NAME
from pretrain.training.run_logs import plot_loss

log = logging.getLogger(__name__)


class PeriodicCheckpoint(Callback):
    """Checkpoint every ``every_n_steps`` steps and whenever tokens seen cross a multiple of
    ``milestone_every_tokens`` (milestones are named by tokens and never deleted); keep the newest
    ``keep_last`` regular ones (0 = keep all); save once more when training ends."""

    def __init__(self, every_n_steps: int = 1000, milestone_every_tokens: int | None = None,
                 keep_last: int = 3, save_at_end: bool = True,
                 on_error: Literal["continue", "stop"] = "continue"):
        if on_error not in ("continue", "stop"):
            raise PretrainError(f"checkpoint.on_error is continue or stop, not {on_error!r} (checkpoint.on_error)")
        self.every_n_steps = every_n_steps
        self.on_error = on_error
        self.milestone_every_tokens = milestone_every_tokens
        self.keep_last = keep_last
        self.save_at_end = save_at_end
        self._last_saved_step = -1
        self._milestones_passed = 0
        self._requested = False
        self._stop_after_request = False
        self._sigterm = False

    def request_checkpoint(self, stop: bool = False) -> None:
        """Save at the next step boundary (and then stop training if ``stop``). Safe to call from
        a signal handler: it only sets a flag. For preemption (SLURM's warning signal): resuming
        from a step boundary is exact, a state saved mid-accumulation would not be."""
        self._requested = True
        self._stop_after_request = self._stop_after_request or stop

    def on_train_start(self, trainer, pl_module) -> None:
        self._last_saved_step = trainer.global_step  # the state we resumed from (or step 0) exists
        # SIGTERM (Kubernetes, schedulers, `scancel` without --signal): checkpoint at the next
        # step boundary and stop with status 0, as SLURM's warning signal does. This replaces the
        # handler Lightning installed for the fit (it would stop without a checkpoint, and runs a
        # collective inside the handler); Lightning restores the previous one when the fit ends.
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._on_sigterm)
        if self.milestone_every_tokens:
            self._milestones_passed = pl_module.tokens_seen // self.milestone_every_tokens

    def _on_sigterm(self, signum, frame) -> None:
        self._sigterm = True
        self.request_checkpoint(stop=True)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        """The end of an optimizer step (one training batch is one step)."""
        step = trainer.global_step
        # Any rank may have received a request (a signal): all ranks must save together.
        requested = trainer.strategy.reduce_boolean_decision(self._requested, all=False)
        if requested and trainer.strategy.reduce_boolean_decision(self._sigterm, all=False):
            self._sigterm = False
            if trainer.is_global_zero:
                log.info("SIGTERM: checkpointing at step %d and stopping (resume with --ckpt_path last)", step)
        if step != self._last_saved_step:  # else a skipped (non-finite) step: nothing new to save
            milestone = False
            if self.milestone_every_tokens:
                passed = pl_module.tokens_seen // self.milestone_every_tokens
                milestone, self._milestones_passed = passed > self._milestones_passed, passed
            periodic = bool(self.every_n_steps) and step % self.every_n_steps == 0
            saved = True
            if milestone:
                saved = self.save(trainer, pl_module, layout.milestone_name(step, pl_module.tokens_seen))
            elif requested or periodic:
                saved = self.save(trainer, pl_module, layout.step_name(step))
            if not saved and (self.on_error == "stop" or self._stop_after_request):
                # A scheduler requeues a job that failed: the rerun resumes from the newest intact one.
                raise PretrainError(f"stopping: checkpoint at step {step} could not be written "
                                    f"(checkpoint.on_error {self.on_error})")
        if requested:
            self._requested = False
            if trainer.strategy.reduce_boolean_decision(self._stop_after_request, all=False):
                trainer.should_stop = True

    def on_train_end(self, trainer, pl_module) -> None:
        if self.save_at_end and trainer.global_step != self._last_saved_step:
            if not self.save(trainer, pl_module, layout.step_name(trainer.global_step), final=True):
                raise PretrainError(f"the final checkpoint (step {trainer.global_step}) could not be "
                                    f"written: the steps after the newest intact one are lost "
                                    f"({layout.checkpoints_dir(trainer.default_root_dir)})")

    def save(self, trainer, pl_module, name: str, final: bool = False) -> bool:
        """Write checkpoint ``name``; True when it is complete. A write that fails (OSError: a
        full disk, a quota) on any rank fails on all: its temporary directory is removed, every
        earlier checkpoint is kept, one warning names the error and the newest intact checkpoint."""
        started = time.perf_counter()
        run_dir = trainer.default_root_dir
        tmp = layout.checkpoints_dir(run_dir) / f"{layout.TMP_PREFIX}{name}"
        error = None
        if trainer.is_global_zero:
            error = _attempt(lambda: layout.begin_checkpoint(run_dir, name))
        # Each reduction doubles as the barrier between the phases: every rank learns the outcome.
        if not trainer.strategy.reduce_boolean_decision(error is not None, all=False):
            error = _attempt(lambda: trainer.save_checkpoint(tmp / layout.STATE_NAME),
                             complete_collective=lambda: trainer.strategy.barrier("Trainer.save_checkpoint"))
        if not trainer.strategy.reduce_boolean_decision(error is not None, all=False):
            if trainer.is_global_zero:
                error = _attempt(lambda: layout.commit_checkpoint(tmp, self._meta(trainer, pl_module, tmp)))
        if trainer.strategy.reduce_boolean_decision(error is not None, all=False):
            self._report_failure(trainer, name, tmp, error, final)
            return False
        if trainer.is_global_zero:
            layout.apply_retention(run_dir, self.keep_last)
            plot_loss(run_dir)
            log.info("saved checkpoint %s (%.1f s)", tmp.with_name(name), time.perf_counter() - started)
        trainer.strategy.barrier("checkpoint-committed")
        self._last_saved_step = trainer.global_step
        return True

    def _report_failure(self, trainer, name: str, tmp: Path, error: BaseException | None, final: bool) -> None:
        if error is not None and not trainer.is_global_zero:
            log.warning("rank %d: checkpoint %s failed: %s", trainer.global_rank, name, error)
        if trainer.is_global_zero:
            shutil.rmtree(tmp, ignore_errors=True)
            newest = layout.resolve_ckpt_path("last", trainer.default_root_dir)
            then = ("the run ends" if final else
                    "stopping" if self.on_error == "stop" or self._stop_after_request else
                    f"training continues and tries again in {self.every_n_steps} steps"
                    if self.every_n_steps else "training continues")
            log.warning("checkpoint %s was not written: %s; newest intact checkpoint: %s; %s "
                        "(checkpoint.on_error %s)", name,
                        error if error is not None else "the write failed on another rank",
                        newest.parent if newest else "none", then, self.on_error)
        trainer.strategy.barrier("checkpoint-failed")

    def _meta(self, trainer, pl_module, tmp) -> dict:
        datamodule = trainer.datamodule
        run_dir = Path(trainer.default_root_dir)
        return {
            "step": trainer.global_step,
            "tokens_seen": pl_module.tokens_seen,
            "samples_consumed": getattr(datamodule, "samples_consumed", None),
            "skipped_steps": pl_module.skipped_steps,
            "model_config": dataclasses.asdict(pl_module.model_config),
            # what `slm pretrain` saved in the run directory before training started
            "config": _read(run_dir / layout.CONFIG_NAME, yaml.safe_load),
            "plan": _read(run_dir / PLAN_NAME, json.loads),
            "tokenizer_dir": getattr(datamodule, "tokenizer_dir", None),
            "format": "dcp" if (tmp / layout.STATE_NAME).is_dir() else "torch",
            "world_size": trainer.world_size,
            "saved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }


def _read(path: Path, parse) -> dict:
    """A run-directory file parsed, or {} when absent (a trainer not started by `slm pretrain`)."""
    return parse(path.read_text()) if path.is_file() else {}


def _attempt(write, complete_collective=None) -> BaseException | None:
    """Run ``write``; the error that means "could not write" (OSError; a failed
    torch.distributed.checkpoint save, raised on every rank), or None. A local OSError inside
    ``trainer.save_checkpoint`` skips Lightning's closing barrier: ``complete_collective`` joins
    the other ranks there."""
    from torch.distributed.checkpoint.api import CheckpointException

    try:
        write()
    except OSError as e:
        if complete_collective is not None:
            complete_collective()
        return e
    except CheckpointException as e:
        return e
    return None
