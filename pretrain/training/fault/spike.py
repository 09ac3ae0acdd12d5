"""Loss-spike rewinds (PaLM §5.1: restart ~100 steps before the spike, skip 200–500 batches).

Detection. `SpikeDetector` keeps the training losses of the last ``window`` optimizer steps;
once the window is full, a step whose loss exceeds ``mean + zscore·std`` (population std of the
window) is a spike. The loss it sees is the step's loss averaged over all ranks, so every rank
sees the same number; the decision is still all-reduced (any rank → all ranks) so that the
ranks can never part ways. A spike's own loss never enters the window.

Rewind. The module raises `LossSpike` out of ``trainer.fit`` at the end of the spiking step,
before any callback could checkpoint that state. ``slm pretrain`` catches it on every rank and
fits again, with a fresh trainer, module and data module, from the newest intact checkpoint at
least ``rewind_steps`` back (`rewind_target`). We chose a refit over reloading state in place
because Lightning restores every piece the same way as a resume does (sharded FSDP2 model and
optimizer, scheduler, loop counters, RNG, data position) and the data loader restarts at the
new position; loading in place would have to redo all of that by hand, mid-iteration of a
loader whose workers have already read ahead. The process group stays up between the fits.

Skip. The data module moves its stream position (``samples_consumed``) on by
``skip_batches`` steps of data (G samples each) when it loads the rewind checkpoint and appends
the rewind to its ``rewinds`` list. Position and list travel in every later checkpoint, so the
order of samples stays a pure function of (seed, rewinds, step): a resumed run skips the same
batches. Tokens seen count the skipped samples, as they do a non-finite step's batch.

Kill safety. Checkpoints newer than the rewind target belong to the abandoned stretch: at the
start of the new fit (every rank has loaded), rank 0 deletes them, then the target checkpoint is
saved again with the skip applied. A kill at any moment therefore resumes either before the
rewind (the spike recurs at the same step and the same rewind happens) or after it.
"""

from __future__ import annotations

import logging
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

from pretrain.errors import PretrainError
from pretrain.training.checkpoint import layout

log = logging.getLogger(__name__)


@dataclass
class WindowStats:
    """A step's loss against the window of the steps before it."""

    loss: float
    mean: float
    std: float
    spike: bool


class SpikeDetector:
    """Running window of step losses (see the module docstring); checkpointed with the run."""

    def __init__(self, window: int, zscore: float):
        self.window, self.zscore = window, zscore
        self.losses: list[float] = []

    def observe(self, loss: float) -> WindowStats:
        """Judge ``loss`` against the window; a non-spike loss then joins it."""
        full = len(self.losses) >= self.window
        n = max(len(self.losses), 1)
        mean = sum(self.losses) / n
        std = math.sqrt(sum((x - mean) ** 2 for x in self.losses) / n)
        spike = full and not loss <= mean + self.zscore * std  # NaN counts as a spike
        if not spike:
            self.losses = [*self.losses, loss][-self.window:]
        return WindowStats(loss, mean, std, spike)

    def state_dict(self) -> dict:
        return {"losses": list(self.losses)}

    def load_state_dict(self, state: dict) -> None:
        self.losses = [float(x) for x in state["losses"]][-self.window:]


class LossSpike(Exception):
    """Raised out of ``trainer.fit`` on every rank at the end of a spiking step (not a user
    error: ``slm pretrain`` catches it and rewinds)."""

    def __init__(self, step: int, stats: WindowStats, window: int):
        super().__init__(f"loss spike at step {step}: {stats.loss:.4f} > window mean {stats.mean:.4f} "
                         f"+ z·std (std {stats.std:.4f}, last {window} steps)")
        self.step, self.stats, self.window = step, stats, window


def rewind_target(run_dir: str | Path, spike_step: int, rewind_steps: int, not_before: int = 0) -> Path:
    """The checkpoint directory to rewind to: the newest intact one at least ``rewind_steps``
    before ``spike_step``, but never before ``not_before`` (the previous rewind's checkpoint: going
    further back would lose that rewind's skip; then that one is used, closer than asked).
    PretrainError when there is none."""
    intact = []
    for checkpoint in layout.complete_checkpoints(run_dir):
        step = layout.checkpoint_step(checkpoint)
        if not not_before <= step < spike_step:
            continue
        damage = layout.verify_checkpoint(checkpoint)
        if damage:
            log.warning("rewind: skipping damaged checkpoint %s: %s", checkpoint, damage)
        else:
            intact.append(checkpoint)
    wanted = [c for c in intact if layout.checkpoint_step(c) <= spike_step - rewind_steps]
    if wanted:
        return wanted[-1]
    if intact:
        log.warning("rewind: no checkpoint between step %d (the previous rewind) and step %d; "
                    "rewinding to %s instead", not_before, spike_step - rewind_steps, intact[0].name)
        return intact[0]
    raise PretrainError(f"loss spike at step {spike_step}, but no intact checkpoint at or before step "
                        f"{spike_step - rewind_steps} to rewind to; checkpoint more often "
                        f"(checkpoint.every_n_steps) or rewind less far (fault.spike.rewind_steps)")


def discard_newer_checkpoints(run_dir: str | Path, step: int) -> list[Path]:
    """Delete the complete checkpoints after ``step`` (the abandoned stretch of a rewind)."""
    doomed = [c for c in layout.complete_checkpoints(run_dir) if layout.checkpoint_step(c) > step]
    for checkpoint in doomed:
        shutil.rmtree(checkpoint)
        log.info("rewind: removed checkpoint %s (after the rewind point)", checkpoint.name)
    return doomed


def commit_rewind(trainer, pl_module, checkpoint_name: str) -> None:
    """At the start of the fit after a rewind (every rank has loaded ``checkpoint_name``):
    delete the newer checkpoints, then save the loaded state, skip applied, under its name."""
    from pretrain.training.checkpoint.callback import PeriodicCheckpoint

    trainer.strategy.barrier("rewind-loaded")
    if trainer.is_global_zero:
        discard_newer_checkpoints(trainer.default_root_dir, layout.checkpoint_step(checkpoint_name))
    trainer.strategy.barrier("rewind-discarded")
    savers = [c for c in trainer.callbacks if isinstance(c, PeriodicCheckpoint)]
    if savers:
        savers[0].save(trainer, pl_module, checkpoint_name)
