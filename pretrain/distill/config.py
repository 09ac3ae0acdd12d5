"""`DistillConfig`: the `distill:` section of an `slm pretrain` recipe.

::

    distill:
      teacher: runs/demo-cpu     # an HF Llama directory, a run directory or a checkpoint; or
      cache: runs/demo-topk      # a `slm distill cache` directory (exactly one of the two)
      alpha: 0.5                 # loss = (1 − alpha)·CE + alpha·T²·KL(teacher_T ‖ student_T)
      temperature: 1.0           # T > 0
      top_k: null                # with a cache: use its first top_k ids (default: all K)

`validate()` checks the values alone; the teacher, the cache and their match with the data
are checked by `pretrain.distill.teacher` and `pretrain.distill.cache_reader`.
"""

from __future__ import annotations

from dataclasses import dataclass

from pretrain.errors import PretrainError


@dataclass
class DistillConfig:
    """Knowledge distillation settings; see the module docstring for each key."""

    teacher: str | None = None
    alpha: float = 0.5
    temperature: float = 1.0
    top_k: int | None = None
    cache: str | None = None

    @property
    def mode(self) -> str:
        """``"online"`` (a teacher model runs in every step) or ``"cached"`` (top-K read from disk)."""
        return "cached" if self.cache is not None else "online"

    def validate(self) -> "DistillConfig":
        """Return self if the values make a distillation run; else `PretrainError` naming the key."""
        if (self.teacher is None) == (self.cache is None):
            raise PretrainError("give exactly one of distill.teacher (online) and distill.cache "
                                f"(offline), got teacher {self.teacher!r} and cache "
                                f"{self.cache!r} (distill)")
        if not isinstance(self.alpha, (int, float)) or not 0.0 <= self.alpha <= 1.0:
            raise PretrainError(f"must be in [0, 1], got {self.alpha!r} (distill.alpha)")
        if not isinstance(self.temperature, (int, float)) or not self.temperature > 0.0:
            raise PretrainError(f"must be > 0, got {self.temperature!r} (distill.temperature)")
        if self.top_k is not None:
            if self.cache is None:
                raise PretrainError("top_k selects the ids of a cache; the online teacher uses "
                                    "its whole distribution (distill.top_k)")
            if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 1:
                raise PretrainError(f"must be a positive integer, got {self.top_k!r} "
                                    "(distill.top_k)")
        return self
