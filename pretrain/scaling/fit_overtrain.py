"""Over-training: the fixed-multiplier law of Gadre et al. (2024), its extrapolation to held-out
larger runs, and the inference-aware optimum of Sardana et al. (2024).

Gadre et al.: with token multiplier M = D/N and training compute C = 6·N·D,
``L(C, M) = E + (a·M^η + b·M^−η)·C^−η``. For fixed M the reducible loss ``L − E`` is a power
law in C with the same slope −η for every M: parallel lines in log-log space.

Fitting method (ours, stated because the paper's procedure is not the point): the law is a
log-sum-exp of terms linear in θ = (log a, log b, e, η),
``log L = LSE(log a + η·(log M − log C), log b − η·(log M + log C), e)``, so we fit it exactly
like approach 3: sum over points of Huber(δ=1e-3) of the log-loss residual, L-BFGS-B from a grid
(η ∈ {0, 0.25, …, 1}, log a, log b ∈ {0, 5, …, 25}, e ∈ {−1, −0.5, …, 1}; 900 starts), best kept.

Sardana & Frankle (2024): for a target loss ℓ and an expected number of inference tokens
D_inf, choose N and D_train to minimise ``6·N·D_train + 2·N·D_inf`` subject to
``L(N, D_train) = ℓ`` under the approach-3 law; D_train(N) follows from the constraint, leaving
a one-dimensional minimisation over log N.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize_scalar

from pretrain.errors import PretrainError
from pretrain.scaling.fit_approach3 import ChinchillaLaw
from pretrain.scaling.huber_lse import HUBER_DELTA, distinct_optima, fit_lse_huber, grid

MIN_POINTS = 5  # four parameters
BOOTSTRAP_STARTS = 8  # as approach 3: each resample refits from the best distinct optima
GRID_ETA = np.arange(0.0, 1.01, 0.25)
GRID_LOG_COEFFICIENT = np.arange(0.0, 25.01, 5.0)
GRID_E = np.arange(-1.0, 1.01, 0.5)


@dataclass(frozen=True)
class OvertrainLaw:
    """``L(C, M) = E + (a·M^η + b·M^−η)·C^−η``; C in FLOPs, M = tokens/params."""

    E: float
    a: float
    b: float
    eta: float

    def loss(self, flops, multiplier):
        flops, multiplier = np.asarray(flops, float), np.asarray(multiplier, float)
        return self.E + (self.a * multiplier ** self.eta
                         + self.b * multiplier ** -self.eta) * flops ** -self.eta

    def as_dict(self) -> dict:
        return {"E": self.E, "a": self.a, "b": self.b, "eta": self.eta}


@dataclass(frozen=True)
class OvertrainFit:
    law: OvertrainLaw
    objective: float
    fitted_runs: np.ndarray  # indices of points used for the fit
    heldout_runs: np.ndarray  # indices of points predicted, not fitted
    heldout_relative_error: np.ndarray  # (predicted − actual) / actual per held-out point
    bootstrap: list = ()  # OvertrainLaw per resample of the fitted points that converged


def _terms(flops: np.ndarray, multiplier: np.ndarray) -> np.ndarray:
    """Design matrices [3, n, 4] for θ = (log a, log b, e, η)."""
    n = len(flops)
    log_c, log_m = np.log(flops), np.log(multiplier)
    terms = np.zeros((3, n, 4))
    terms[0, :, 0], terms[0, :, 3] = 1.0, log_m - log_c
    terms[1, :, 1], terms[1, :, 3] = 1.0, -(log_m + log_c)
    terms[2, :, 2] = 1.0
    return terms


def _law(theta) -> OvertrainLaw:
    log_a, log_b, e, eta = (float(x) for x in theta)
    return OvertrainLaw(E=float(np.exp(e)), a=float(np.exp(log_a)), b=float(np.exp(log_b)),
                        eta=eta)


def fit_overtrain_law(flops, multiplier, loss, delta: float = HUBER_DELTA, starts=None,
                      full: bool = False):
    """Best (law, objective) over the 900-start grid (or ``starts``); inputs positive,
    len ≥ MIN_POINTS. ``full`` adds the LseFit (its optima seed bootstrap refits)."""
    flops, multiplier, loss = (np.asarray(x, float) for x in (flops, multiplier, loss))
    if starts is None:
        starts = grid(GRID_LOG_COEFFICIENT, GRID_LOG_COEFFICIENT, GRID_E, GRID_ETA)
    best = fit_lse_huber(_terms(flops, multiplier), np.log(loss), starts, delta)
    law = _law(best.theta)
    return (law, best.objective, best) if full else (law, best.objective)


def heldout_split(params: np.ndarray, holdout_params: float | None) -> np.ndarray:
    """Boolean mask of held-out points: params ≥ ``holdout_params``, by default the largest
    model size (Gadre et al. predict their largest models from smaller ones). No points are
    held out if fewer than MIN_POINTS would remain to fit."""
    params = np.asarray(params, float)
    threshold = params.max() if holdout_params is None else holdout_params
    mask = params >= threshold
    if np.count_nonzero(~mask) < MIN_POINTS:
        return np.zeros(len(params), bool)
    return mask


def fit_overtrain(params, tokens, loss, flops, holdout_params: float | None = None,
                  bootstrap: int = 0, seed: int = 0):
    """Fit on all but the held-out runs, report the held-out relative error; ``bootstrap``
    resamples of the fitted runs, each refit from the best distinct optima of the full fit."""
    params, tokens, loss, flops = (np.asarray(x, float) for x in (params, tokens, loss, flops))
    multiplier = tokens / params
    heldout = heldout_split(params, holdout_params)
    fitted = ~heldout
    law, objective, best = fit_overtrain_law(flops[fitted], multiplier[fitted], loss[fitted],
                                             full=True)
    laws = []
    if bootstrap > 0:
        starts = distinct_optima(best, BOOTSTRAP_STARTS)
        rng = np.random.default_rng(seed)
        index_fitted = np.flatnonzero(fitted)
        for _ in range(bootstrap):
            index = index_fitted[rng.integers(0, len(index_fitted), len(index_fitted))]
            try:
                refit, _ = fit_overtrain_law(flops[index], multiplier[index], loss[index],
                                             starts=starts)
            except ArithmeticError:
                continue
            laws.append(refit)
    predicted = law.loss(flops[heldout], multiplier[heldout])
    return OvertrainFit(law=law, objective=objective, fitted_runs=np.flatnonzero(fitted),
                        heldout_runs=np.flatnonzero(heldout),
                        heldout_relative_error=(predicted - loss[heldout]) / loss[heldout],
                        bootstrap=laws)


@dataclass(frozen=True)
class InferenceOptimum:
    target_loss: float
    inference_tokens: float
    params: float
    tokens: float
    training_flops: float
    inference_flops: float

    @property
    def total_flops(self) -> float:
        return self.training_flops + self.inference_flops

    def as_dict(self) -> dict:
        return {"target_loss": self.target_loss, "inference_tokens": self.inference_tokens,
                "params": self.params, "tokens": self.tokens,
                "tokens_per_param": self.tokens / self.params,
                "training_flops": self.training_flops, "inference_flops": self.inference_flops,
                "total_flops": self.total_flops}


def tokens_for_loss(law: ChinchillaLaw, params, target_loss: float):
    """Training tokens that bring a model of ``params`` to ``target_loss`` (inf if it cannot)."""
    gap = target_loss - law.E - law.A / np.asarray(params, float) ** law.alpha
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(gap > 0, (law.B / np.where(gap > 0, gap, 1.0)) ** (1 / law.beta), np.inf)


def inference_optimal(law: ChinchillaLaw, target_loss: float,
                      inference_tokens: float) -> InferenceOptimum:
    """Sardana et al.'s optimum; ``target_loss`` must exceed the law's E (PretrainError)."""
    if not target_loss > law.E:
        raise PretrainError(f"target loss {target_loss:g} is not above the fitted irreducible "
                            f"loss E = {law.E:g} (--target-loss)")
    # Smallest model that can reach the target with infinite data; the optimum lies above it.
    log_min_params = np.log(law.A / (target_loss - law.E)) / law.alpha

    def total_flops(log_params: float) -> float:
        params = np.exp(log_params)
        tokens = tokens_for_loss(law, params, target_loss)
        return float(np.log(6 * params * tokens + 2 * params * inference_tokens))

    # A coarse scan brackets the (unimodal) minimum, a bounded Brent search refines it.
    scan = log_min_params + np.linspace(1e-6, 30.0, 3001)
    values = np.array([total_flops(u) for u in scan])
    best = int(np.argmin(values))
    low, high = scan[max(best - 1, 0)], scan[min(best + 1, len(scan) - 1)]
    log_params = minimize_scalar(total_flops, bounds=(low, high), method="bounded",
                                 options={"xatol": 1e-10}).x
    params = float(np.exp(log_params))
    tokens = float(tokens_for_loss(law, params, target_loss))
    return InferenceOptimum(target_loss=float(target_loss), inference_tokens=float(inference_tokens),
                            params=params, tokens=tokens, training_flops=6 * params * tokens,
                            inference_flops=2 * params * inference_tokens)
