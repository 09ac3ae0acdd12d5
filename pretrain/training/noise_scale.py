"""The gradient noise scale B_simple = tr(Σ) / |G|² (McCandlish et al. 2018, "An Empirical Model
of Large-Batch Training"), estimated in the loop from two gradient norms every step already has
at hand: the small batch, the first micro-batch on all ranks (b_small sequences), and the big
batch, the whole step (b_big sequences).

With |G_b|² the squared norm of a gradient averaged over b sequences, E|G_b|² = |G|² + tr(Σ)/b,
and their Appendix A.1 gives unbiased estimates from one small and one big batch:

    |G|²  ≈ (b_big·|G_big|² − b_small·|G_small|²) / (b_big − b_small)
    tr(Σ) ≈ (|G_small|² − |G_big|²) / (1/b_small − 1/b_big)

Each is very noisy on its own, so both are exponentially averaged (bias-corrected, like Adam's
moments) before their ratio is taken, as the paper does. Σ is the per-sequence gradient
covariance, so B_simple is in sequences; × seq_len gives tokens. It reads: the batch size at
which the gradient's noise and signal are equal; well below it more batch buys almost linear
speed-up, well above it mostly spends compute.
"""

from __future__ import annotations

import math


def unbiased_estimates(small_sq: float, big_sq: float, b_small: float, b_big: float) -> tuple[float, float]:
    """(|G|², tr(Σ)) from one small-batch and one big-batch squared gradient norm."""
    if not 0 < b_small < b_big:
        raise ValueError(f"need 0 < b_small < b_big, got {b_small}, {b_big}")
    grad_sq = (b_big * big_sq - b_small * small_sq) / (b_big - b_small)
    trace = (small_sq - big_sq) / (1 / b_small - 1 / b_big)
    return grad_sq, trace


class NoiseScale:
    """Exponential averages of the two estimates and the noise scale they give.

    ``decay`` is the EMA's weight of the past (0.99: about 100 steps of memory)."""

    def __init__(self, decay: float = 0.99):
        self.decay = decay
        self.grad_sq = self.trace = self.weight = 0.0

    def update(self, small_sq: float, big_sq: float, b_small: float, b_big: float) -> None:
        grad_sq, trace = unbiased_estimates(small_sq, big_sq, b_small, b_big)
        if not (math.isfinite(grad_sq) and math.isfinite(trace)):
            return
        d = self.decay
        self.grad_sq = d * self.grad_sq + (1 - d) * grad_sq
        self.trace = d * self.trace + (1 - d) * trace
        self.weight = d * self.weight + (1 - d)

    def metrics(self, seq_len: int) -> dict[str, float]:
        """``noise_scale_sequences``, ``noise_scale_tokens`` and the two averaged parts; {} before
        the first update or while the averaged |G|² is not positive (noise dominates)."""
        if self.weight == 0 or self.grad_sq <= 0:
            return {}
        grad_sq, trace = self.grad_sq / self.weight, self.trace / self.weight
        return {"noise_scale_sequences": trace / grad_sq, "noise_scale_tokens": trace / grad_sq * seq_len,
                "noise_grad_sq": grad_sq, "noise_trace": trace}

    def state_dict(self) -> dict:
        return {"decay": self.decay, "grad_sq": self.grad_sq, "trace": self.trace, "weight": self.weight}

    def load_state_dict(self, state: dict) -> None:
        self.decay, self.grad_sq, self.trace, self.weight = (
            state["decay"], state["grad_sq"], state["trace"], state["weight"])
