"""Kaplan et al. (2020), eq. (1.5): ``L(N, D) = [(N_c/N)^(α_N/α_D) + D_c/D]^α_D``.

Unlike approach 3's sum of separate N and D terms, the N and D effects combine inside one power:
what more data buys depends on the model's size. On the CPU demo (README) this is the law that
predicts the wide, long held-out run; approach 3 over-predicts it by 8%.

Fitting: as approach 3 (summed Huber(δ=1e-3) of log-loss residuals, L-BFGS-B from a grid, the
best distinct optima polished, bootstrap refits from them), with θ = (u, v, r, s), u = log N_c,
v = log D_c, r = α_N/α_D, s = α_D:
``log L = s · LSE(r·(u − log N), v − log D)``. The grid: u, v ∈ {0, 5, …, 30}, r ∈ {0.5, 1, 2},
s ∈ {0.05, 0.1, 0.25, 0.5, 1} (735 starts).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from pretrain.scaling.huber_lse import HUBER_DELTA, distinct_optima, fit_lse_huber, grid, huber

PARAMETERS = ("N_c", "D_c", "alpha_N", "alpha_D")
MIN_POINTS = 5  # four parameters
BOOTSTRAP_STARTS = 8
GRID_LOG_SCALE = np.arange(0.0, 30.01, 5.0)
GRID_RATIO = np.array([0.5, 1.0, 2.0])
GRID_ALPHA_D = np.array([0.05, 0.1, 0.25, 0.5, 1.0])


@dataclass(frozen=True)
class KaplanLaw:
    """``L(N, D) = [(N_c/N)^(α_N/α_D) + D_c/D]^α_D``; N parameters, D tokens."""

    N_c: float
    D_c: float
    alpha_N: float
    alpha_D: float

    def loss(self, params, tokens):
        params, tokens = np.asarray(params, float), np.asarray(tokens, float)
        return ((self.N_c / params) ** (self.alpha_N / self.alpha_D)
                + self.D_c / tokens) ** self.alpha_D

    def as_dict(self) -> dict:
        return {name: float(getattr(self, name)) for name in PARAMETERS}


@dataclass(frozen=True)
class KaplanFit:
    law: KaplanLaw
    objective: float
    converged: bool
    starts: int
    seconds: float
    bootstrap: list = ()  # KaplanLaw per resample that converged


def objective_and_gradient(theta: np.ndarray, logs: tuple, log_loss: np.ndarray,
                           delta: float = HUBER_DELTA) -> tuple[float, np.ndarray]:
    """Sum of Huber(s·LSE(r·(u − log N), v − log D) − log L) and its gradient in θ = (u, v, r, s).

    ``logs``: (log N, log D), arrays of the points."""
    u, v, r, s = theta
    log_n, log_d = logs
    first, second = r * (u - log_n), v - log_d
    top = np.maximum(first, second)
    e1, e2 = np.exp(first - top), np.exp(second - top)
    total = e1 + e2
    lse = top + np.log(total)
    value, slope = huber(s * lse - log_loss, delta)
    w1, w2 = e1 / total, e2 / total  # d LSE / d (first, second)
    gradient = np.array([np.sum(slope * s * w1 * r), np.sum(slope * s * w2),
                         np.sum(slope * s * w1 * (u - log_n)), np.sum(slope * lse)])
    return value, gradient


def _law(theta) -> KaplanLaw:
    u, v, r, s = (float(x) for x in theta)
    return KaplanLaw(N_c=float(np.exp(u)), D_c=float(np.exp(v)), alpha_N=r * s, alpha_D=s)


def _fit(params, tokens, loss, starts):
    logs = (np.log(params), np.log(tokens))
    return fit_lse_huber(logs, np.log(loss), starts, objective=objective_and_gradient)


def fit_kaplan(params, tokens, loss, *, bootstrap: int = 0, seed: int = 0) -> KaplanFit:
    """Best law over the grid; ``bootstrap`` resamples of the points, each refit from the best
    distinct optima of the full fit. Inputs positive, len ≥ MIN_POINTS."""
    params, tokens, loss = (np.asarray(x, float) for x in (params, tokens, loss))
    start = time.perf_counter()
    starts = grid(GRID_LOG_SCALE, GRID_LOG_SCALE, GRID_RATIO, GRID_ALPHA_D)
    best = _fit(params, tokens, loss, starts)
    seconds = time.perf_counter() - start
    laws = []
    if bootstrap > 0:
        refit_starts = distinct_optima(best, BOOTSTRAP_STARTS)
        rng = np.random.default_rng(seed)
        for _ in range(bootstrap):
            index = rng.integers(0, len(params), len(params))
            try:
                laws.append(_law(_fit(params[index], tokens[index], loss[index],
                                      refit_starts).theta))
            except ArithmeticError:
                continue
    return KaplanFit(law=_law(best.theta), objective=best.objective, converged=best.converged,
                     starts=len(starts), seconds=seconds, bootstrap=laws)
