"""The Lightning callback that writes checkpoints in the layout of ``pretrain/training/checkpoint/layout.py``.

Every ``every_n_steps`` optimizer steps, at each token milestone and at the end of training it
saves Lightning's full training state (model, optimizer, lr scheduler, loop counters, data
position, RNG states) with ``trainer.save_checkpoint`` — a single file on one device or DDP, a
torch.distributed.checkpoint directory under FSDP2 — into a temporary directory, adds
``meta.json`` and renames the directory into place. Then it applies the retention policy and
redraws the loss plot.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import signal
import threading
import time
from pathlib import Path

import yaml
from lightning.pytorch import Callback

from pretrain.training.checkpoint import layout
from pretrain.training.plan import PLAN_NAME
from pretrain.training.run_logs import plot_loss

log = logging.getLogger(__name__)


class PeriodicCheckpoint(Callback):
    """Checkpoint every ``every_n_steps`` steps and whenever tokens seen cross a multiple of
    ``milestone_every_tokens`` (milestones are named by tokens and never deleted); keep the newest
    ``keep_last`` regular ones (0 = keep all); save once more when training ends."""

    def __init__(self, every_n_steps: int = 1000, milestone_every_tokens: int | None = None,
                 keep_last: int = 3, save_at_end: bool = True):
        self.every_n_steps = every_n_steps
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
            if milestone:
                self.save(trainer, pl_module, layout.milestone_name(step, pl_module.tokens_seen))
            elif requested or periodic:
                self.save(trainer, pl_module, layout.step_name(step))
        if requested:
            self._requested = False
            if trainer.strategy.reduce_boolean_decision(self._stop_after_request, all=False):
                trainer.should_stop = True

    def on_train_end(self, trainer, pl_module) -> None:
        if self.save_at_end and trainer.global_step != self._last_saved_step:
            self.save(trainer, pl_module, layout.step_name(trainer.global_step))

    def save(self, trainer, pl_module, name: str) -> None:
        started = time.perf_counter()
        run_dir = trainer.default_root_dir
        if trainer.is_global_zero:
            layout.begin_checkpoint(run_dir, name)
        trainer.strategy.barrier("checkpoint-begin")
        tmp = layout.checkpoints_dir(run_dir) / f"{layout.TMP_PREFIX}{name}"
        trainer.save_checkpoint(tmp / layout.STATE_NAME)
        trainer.strategy.barrier("checkpoint-written")
        if trainer.is_global_zero:
            final = layout.commit_checkpoint(tmp, self._meta(trainer, pl_module, tmp))
            layout.apply_retention(run_dir, self.keep_last)
            plot_loss(run_dir)
            log.info("saved checkpoint %s (%.1f s)", final, time.perf_counter() - started)
        trainer.strategy.barrier("checkpoint-committed")
        self._last_saved_step = trainer.global_step

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
