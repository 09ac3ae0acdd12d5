"""Robust fit of a loss law written as a log-sum-exp of terms linear in the parameters.

Approach 3 and the over-training law have this shape (Kaplan's law, ``fit_kaplan``, is an LSE
scaled by an exponent and brings its own objective to the same multi-start search):

- Chinchilla approach 3, ``L(N, D) = E + A/N^α + B/D^β``:
  ``log L = LSE(a − α·log N, b − β·log D, e)`` with ``A = exp(a)``, ``B = exp(b)``, ``E = exp(e)``.
- Gadre et al. (2024) over-training, ``L(C, M) = E + (a·M^η + b·M^−η)·C^−η``:
  ``log L = LSE(log a + η·(log M − log C), log b − η·(log M + log C), e)``.

Each term ``k`` is ``X[k] @ θ`` for a fixed design matrix ``X[k]`` (points × parameters), so one
objective with an analytic gradient serves both: the SUM over points of
``Huber_δ(LSE_k(X[k] @ θ) − log L)`` (Hoffmann et al. 2022, appendix D.2, as corrected by
Besiroglu et al. 2024: summed, not averaged, and optimised to convergence), minimised with
scipy's L-BFGS-B from every point of a grid of initialisations, keeping the best.

We write the objective and gradient in numpy ourselves (instead of autograd or torch) because
the fit runs thousands of small optimisations: a vectorised closed-form gradient keeps a few
hundred points × 4,500 starts under a minute on one CPU core.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from threadpoolctl import threadpool_limits

HUBER_DELTA = 1e-3
# Two passes. Every start runs L-BFGS-B with scipy's default stopping rule (as in Besiroglu et
# al.'s code), which finds each start's basin; the best POLISH_STARTS distinct optima are then
# re-run from where they stopped with a much tighter rule. The objective is a sum of Huber terms
# of size ~δ·|residual| (1e-4 to 1e-2 in total), so the defaults (ftol 2.2e-9 absolute when
# f < 1, gtol 1e-5) can stop a little short of the optimum; polishing only the contenders costs
# ~1% of the time that tight tolerances on all 4,500 starts would.
POLISH_OPTIONS = {"ftol": 1e-13, "gtol": 1e-11, "maxiter": 5000}
POLISH_STARTS = 10


@dataclass(frozen=True)
class LseFit:
    """The best of all starts: parameters ``theta``, objective value, and every local optimum
    found (``optima``: rows of θ sorted by objective) for reuse as bootstrap starts."""

    theta: np.ndarray
    objective: float
    converged: bool
    optima: np.ndarray
    optima_objective: np.ndarray
    starts: int


def huber(residual: np.ndarray, delta: float = HUBER_DELTA) -> tuple[float, np.ndarray]:
    """Summed Huber_δ of ``residual`` and its derivative per residual."""
    absolute = np.abs(residual)
    value = float(np.sum(np.where(absolute <= delta, 0.5 * residual * residual,
                                  delta * (absolute - 0.5 * delta))))
    return value, np.clip(residual, -delta, delta)


def objective_and_gradient(theta: np.ndarray, terms: np.ndarray, log_loss: np.ndarray,
                           delta: float = HUBER_DELTA) -> tuple[float, np.ndarray]:
    """Sum of Huber(LSE_k(terms[k] @ θ) − log_loss) and its gradient in θ.

    ``terms``: float array [K, n, p] (K terms, n points, p parameters); ``log_loss``: [n]."""
    logits = np.einsum("knp,p->kn", terms, theta)
    # log-sum-exp and softmax over the K terms, written out: scipy.special's versions cost
    # more in call overhead than the arithmetic at these sizes.
    top = logits.max(axis=0)
    exp = np.exp(logits - top)
    total = exp.sum(axis=0)
    value, slope = huber(top + np.log(total) - log_loss, delta)
    # d LSE / d logits = softmax over the terms.
    weights = exp * (slope / total)  # [K, n]
    gradient = np.einsum("kn,knp->p", weights, terms)
    return value, gradient


def minimise_from(theta0: np.ndarray, terms, log_loss: np.ndarray,
                  delta: float = HUBER_DELTA, options: dict | None = None,
                  objective=objective_and_gradient):
    """One L-BFGS-B run from ``theta0``; returns scipy's OptimizeResult."""
    with np.errstate(over="ignore", invalid="ignore"):
        return minimize(objective, theta0, args=(terms, log_loss, delta), jac=True,
                        method="L-BFGS-B", options=options or {})


def fit_lse_huber(terms, log_loss: np.ndarray, starts: np.ndarray,
                  delta: float = HUBER_DELTA, objective=objective_and_gradient) -> LseFit:
    """Minimise ``objective`` (default: the Huber-LSE one; called as ``objective(θ, terms,
    log_loss, delta)`` → (value, gradient)) from every row of ``starts`` [S, p]; keep the best.

    Starts whose optimisation produced a non-finite objective are dropped. Raises
    ``ArithmeticError`` if none finishes finite (a bug or absurd data, not a user error: the
    caller validates inputs first)."""
    # One BLAS thread: L-BFGS-B's tiny vector operations otherwise go to a multithreaded BLAS
    # whose thread hand-offs cost ~30x the arithmetic (measured; worse on a busy machine).
    with threadpool_limits(limits=1, user_api="blas"):
        coarse = [minimise_from(np.asarray(theta0, dtype=float), terms, log_loss, delta,
                                objective=objective) for theta0 in starts]
        coarse = sorted((r for r in coarse if _finite(r)), key=lambda r: r.fun)
        if not coarse:
            raise ArithmeticError("no initialisation gave a finite objective")
        polished = [minimise_from(r.x, terms, log_loss, delta, POLISH_OPTIONS, objective)
                    for r in _distinct(coarse, POLISH_STARTS)]
    found = sorted((r for r in polished + coarse if _finite(r)), key=lambda r: r.fun)
    best = found[0]
    return LseFit(theta=best.x, objective=float(best.fun), converged=bool(best.success),
                  optima=np.array([r.x for r in found]),
                  optima_objective=np.array([r.fun for r in found]), starts=len(starts))


def _finite(result) -> bool:
    return bool(np.isfinite(result.fun) and np.all(np.isfinite(result.x)))


def _distinct(results: list, count: int, decimals: int = 3) -> list:
    """The first ``count`` results whose parameters differ after rounding."""
    seen, chosen = set(), []
    for result in results:
        key = tuple(np.round(result.x, decimals))
        if key not in seen:
            seen.add(key)
            chosen.append(result)
        if len(chosen) == count:
            break
    return chosen


def grid(*axes) -> np.ndarray:
    """The Cartesian product of the given 1-D value lists as rows [S, len(axes)]."""
    return np.array(list(itertools.product(*axes)), dtype=float)


def distinct_optima(fit: LseFit, count: int, decimals: int = 3) -> np.ndarray:
    """Up to ``count`` best local optima that differ after rounding (bootstrap starts)."""
    seen, chosen = set(), []
    for theta in fit.optima:
        key = tuple(np.round(theta, decimals))
        if key not in seen:
            seen.add(key)
            chosen.append(theta)
        if len(chosen) == count:
            break
    return np.asarray(chosen)
