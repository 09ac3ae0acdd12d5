"""Learning-rate schedules by optimizer step: linear warmup, then cosine or warmup-stable-decay.

Both are plain callables ``step -> lr multiplier`` (relative to the peak lr) so that
``torch.optim.lr_scheduler.LambdaLR`` drives them and its state (the step) is checkpointed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pretrain.errors import PretrainError

SCHEDULES = ("cosine", "wsd")


@dataclass(frozen=True)
class LRSchedule:
    """lr(step) for ``step`` = optimizer steps taken so far (0-based).

    - warmup: linear from ``lr / warmup_steps`` at step 0 to ``lr`` at ``warmup_steps``.
    - ``cosine``: half cosine from ``lr`` to ``min_lr`` over the steps after warmup, then ``min_lr``.
    - ``wsd`` (warmup-stable-decay, Hu et al. 2024): ``lr`` until the last ``decay_fraction`` of
      ``max_steps``, then linear decay to ``min_lr`` at ``max_steps``.
    """

    lr: float
    min_lr: float
    warmup_steps: int
    max_steps: int
    kind: str = "cosine"
    decay_fraction: float = 0.2

    def __post_init__(self):
        if self.kind not in SCHEDULES:
            raise PretrainError(f"unknown lr schedule {self.kind!r}; choose one of {', '.join(SCHEDULES)} (model.schedule)")
        if self.max_steps <= 0:
            raise PretrainError(f"max_steps must be positive to define the lr schedule, got {self.max_steps} (trainer.max_steps)")
        if not 0 <= self.warmup_steps <= self.max_steps:
            raise PretrainError(f"warmup_steps {self.warmup_steps} must be in [0, max_steps={self.max_steps}] (model.warmup_steps)")
        if not 0 <= self.min_lr <= self.lr:
            raise PretrainError(f"min_lr {self.min_lr} must be in [0, lr={self.lr}] (model.min_lr)")
        if not 0.0 < self.decay_fraction <= 1.0:
            raise PretrainError(f"decay_fraction {self.decay_fraction} must be in (0, 1] (model.decay_fraction)")

    def __call__(self, step: int) -> float:
        """Multiplier of the peak lr at ``step`` (what LambdaLR expects)."""
        return self.lr_at(step) / self.lr

    def lr_at(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        if self.kind == "cosine":
            span = max(1, self.max_steps - self.warmup_steps)
            progress = min(1.0, (step - self.warmup_steps) / span)
            return self.min_lr + 0.5 * (self.lr - self.min_lr) * (1.0 + math.cos(math.pi * progress))
        decay_steps = max(1, round(self.decay_fraction * self.max_steps))
        decay_start = max(self.warmup_steps, self.max_steps - decay_steps)
        if step < decay_start:
            return self.lr
        progress = min(1.0, (step - decay_start) / max(1, self.max_steps - decay_start))
        return self.lr + (self.min_lr - self.lr) * progress

    def describe(self) -> str:
        """One line for the start-of-run log."""
        points = sorted({0, self.warmup_steps, self.max_steps // 2, self.max_steps - 1})
        values = ", ".join(f"step {s}: {self.lr_at(s):.3g}" for s in points if 0 <= s < self.max_steps)
        tail = f", decay over the last {self.decay_fraction:.0%}" if self.kind == "wsd" else ""
        return (f"lr schedule {self.kind}: warmup {self.warmup_steps} steps to {self.lr:.3g}, "
                f"min {self.min_lr:.3g} at step {self.max_steps}{tail} ({values})")
