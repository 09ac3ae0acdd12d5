"""Chinchilla approach 3: fit ``L(N, D) = E + A/N^α + B/D^β`` and derive the compute-optimal
frontier.

Method (Hoffmann et al. 2022, appendix D.2; Besiroglu et al. 2024, "Chinchilla scaling: a
replication attempt"): minimise the SUM over points of ``Huber_{δ=1e-3}(LSE(a − α·log N,
b − β·log D, e) − log L)`` with L-BFGS-B from the full grid α, β ∈ {0, 0.5, …, 2},
e ∈ {−1, −0.5, …, 1}, a, b ∈ {0, 5, …, 25} (4,500 starts) and keep the best;
``A = exp(a)``, ``B = exp(b)``, ``E = exp(e)``.

Uncertainty: a seeded non-parametric bootstrap (resample the points with replacement, refit).
Each bootstrap refit starts from the full-data optimum and the best distinct local optima of the
full grid instead of all 4,500 starts (which would cost minutes per resample); on resampled data
the optimum moves little from these, and starting several distinct basins keeps a resample from
being trapped in the full-data one.

Frontier: minimising L subject to ``C = 6·N·D`` gives ``N_opt = G·(C/6)^{β/(α+β)}``,
``D_opt = G^{−1}·(C/6)^{α/(α+β)}`` with ``G = (α·A / (β·B))^{1/(α+β)}``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from pretrain.scaling.huber_lse import HUBER_DELTA, distinct_optima, fit_lse_huber, grid

PARAMETERS = ("E", "A", "B", "alpha", "beta")
MIN_POINTS = 6  # five parameters: at least one more point than unknowns
GRID_ALPHA = GRID_BETA = np.arange(0.0, 2.01, 0.5)
GRID_E = np.arange(-1.0, 1.01, 0.5)
GRID_A = GRID_B = np.arange(0.0, 25.01, 5.0)
BOOTSTRAP_STARTS = 8


@dataclass(frozen=True)
class ChinchillaLaw:
    """``L(N, D) = E + A/N^α + B/D^β``; N in parameters, D in tokens, L in nats/token."""

    E: float
    A: float
    B: float
    alpha: float
    beta: float

    def loss(self, params, tokens):
        params, tokens = np.asarray(params, float), np.asarray(tokens, float)
        return self.E + self.A / params ** self.alpha + self.B / tokens ** self.beta

    @property
    def G(self) -> float:
        return (self.alpha * self.A / (self.beta * self.B)) ** (1.0 / (self.alpha + self.beta))

    @property
    def params_exponent(self) -> float:
        """``a`` in ``N_opt ∝ C^a``."""
        return self.beta / (self.alpha + self.beta)

    @property
    def tokens_exponent(self) -> float:
        """``b`` in ``D_opt ∝ C^b``."""
        return self.alpha / (self.alpha + self.beta)

    def optimal_params(self, flops):
        return self.G * (np.asarray(flops, float) / 6.0) ** self.params_exponent

    def optimal_tokens(self, flops):
        return (np.asarray(flops, float) / 6.0) ** self.tokens_exponent / self.G

    def optimal_loss(self, flops):
        return self.loss(self.optimal_params(flops), self.optimal_tokens(flops))

    @property
    def loss_exponent(self) -> float:
        """γ in ``L_opt(C) − E ∝ C^−γ``: both reducible terms fall as (C/6)^{−αβ/(α+β)}."""
        return self.alpha * self.beta / (self.alpha + self.beta)

    def optimal_flops_for_loss(self, loss):
        """Least compute that reaches ``loss`` (> E) when N and D are chosen optimally."""
        reducible_at_unit = self.optimal_loss(6.0) - self.E  # at C/6 = 1
        return 6.0 * (reducible_at_unit / (np.asarray(loss, float) - self.E)) \
            ** (1.0 / self.loss_exponent)

    def as_dict(self) -> dict:
        return {name: float(getattr(self, name)) for name in PARAMETERS}


@dataclass(frozen=True)
class Approach3Fit:
    law: ChinchillaLaw
    theta: np.ndarray  # (a, b, e, alpha, beta)
    objective: float
    converged: bool
    starts: int
    seconds: float
    bootstrap: list  # list[ChinchillaLaw], one per resample that converged
    bootstrap_seconds: float


def _terms(params: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """Design matrices [3, n, 5] for θ = (a, b, e, α, β)."""
    n = len(params)
    terms = np.zeros((3, n, 5))
    terms[0, :, 0], terms[0, :, 3] = 1.0, -np.log(params)
    terms[1, :, 1], terms[1, :, 4] = 1.0, -np.log(tokens)
    terms[2, :, 2] = 1.0
    return terms


def _law(theta: np.ndarray) -> ChinchillaLaw:
    a, b, e, alpha, beta = (float(x) for x in theta)
    return ChinchillaLaw(E=float(np.exp(e)), A=float(np.exp(a)), B=float(np.exp(b)),
                         alpha=alpha, beta=beta)


def initial_grid() -> np.ndarray:
    """The 4,500 starts (a, b, e, α, β) of Besiroglu et al. (2024)."""
    return grid(GRID_A, GRID_B, GRID_E, GRID_ALPHA, GRID_BETA)


def fit_approach3(params, tokens, loss, *, bootstrap: int = 0, seed: int = 0,
                  delta: float = HUBER_DELTA, starts: np.ndarray | None = None) -> Approach3Fit:
    """Fit the law to points (N, D, L) (all positive, len ≥ MIN_POINTS; callers validate).

    ``starts`` [S, 5] of (a, b, e, α, β) replaces the full grid (for experiments and for tests
    of behaviour other than the fit itself)."""
    params, tokens, loss = (np.asarray(x, float) for x in (params, tokens, loss))
    started = time.perf_counter()
    best = fit_lse_huber(_terms(params, tokens), np.log(loss),
                         initial_grid() if starts is None else starts, delta)
    seconds = time.perf_counter() - started

    laws = []
    started = time.perf_counter()
    if bootstrap > 0:
        starts = distinct_optima(best, BOOTSTRAP_STARTS)
        rng = np.random.default_rng(seed)
        for _ in range(bootstrap):
            index = rng.integers(0, len(params), len(params))
            try:
                refit = fit_lse_huber(_terms(params[index], tokens[index]), np.log(loss[index]),
                                      starts, delta)
            except ArithmeticError:
                continue
            laws.append(_law(refit.theta))
    return Approach3Fit(law=_law(best.theta), theta=best.theta, objective=best.objective,
                        converged=best.converged, starts=best.starts, seconds=seconds,
                        bootstrap=laws, bootstrap_seconds=time.perf_counter() - started)


def parameter_summary(fit: Approach3Fit) -> dict:
    """Each parameter (and the frontier exponents a, b) with its estimate and, given a
    bootstrap, its standard error and 95% percentile interval."""
    summary = {}
    for name in (*PARAMETERS, "params_exponent", "tokens_exponent", "loss_exponent"):
        entry = {"value": float(getattr(fit.law, name))}
        samples = np.array([getattr(law, name) for law in fit.bootstrap])
        if len(samples) >= 2:
            low, high = np.percentile(samples, [2.5, 97.5])
            entry.update(se=float(np.std(samples, ddof=1)), ci95=[float(low), float(high)])
        summary[name] = entry
    return summary


def frontier_table(fit: Approach3Fit, budgets) -> list[dict]:
    """Compute-optimal N, D, tokens/param and loss at each FLOP budget, with bootstrap 95%
    intervals for N_opt and D_opt where a bootstrap was run."""
    rows = []
    for flops in budgets:
        params = float(fit.law.optimal_params(flops))
        tokens = float(fit.law.optimal_tokens(flops))
        row = {"flops": float(flops), "params": params, "tokens": tokens,
               "tokens_per_param": tokens / params, "loss": float(fit.law.optimal_loss(flops))}
        if len(fit.bootstrap) >= 2:
            samples_n = np.array([law.optimal_params(flops) for law in fit.bootstrap])
            samples_d = np.array([law.optimal_tokens(flops) for law in fit.bootstrap])
            row["params_ci95"] = [float(x) for x in np.percentile(samples_n, [2.5, 97.5])]
            row["tokens_ci95"] = [float(x) for x in np.percentile(samples_d, [2.5, 97.5])]
        rows.append(row)
    return rows
