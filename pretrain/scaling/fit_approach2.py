"""Chinchilla approach 2: isoFLOP profiles.

For each FLOP budget C (runs of different sizes N trained on D = C/(6N) tokens), fit a parabola
to loss against log10 N; its vertex is the compute-optimal size N_opt(C), with
D_opt(C) = C / (6·N_opt). Power laws N_opt = k_N·C^a and D_opt = k_D·C^b are then least-squares
lines in log-log space over the budgets (Hoffmann et al. 2022, section 3.2).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

MIN_SIZES_PER_BUDGET = 3  # a parabola needs three distinct sizes
MIN_BUDGETS = 2  # a power law needs two budgets
# Runs whose FLOPs agree within this many decades (~7%) belong to the same isoFLOP budget
# when no explicit `budget` column says so.
BUDGET_TOLERANCE_DECADES = 0.03


@dataclass(frozen=True)
class IsoflopProfile:
    """One budget: the parabola loss = c2·x² + c1·x + c0 in x = log10 N, and its vertex."""

    flops: float
    params: np.ndarray
    loss: np.ndarray
    coefficients: tuple  # (c2, c1, c0)
    optimal_params: float | None  # None when the parabola opens downwards (no minimum)
    optimal_loss: float | None
    interior: bool  # the vertex lies inside the sampled range of N

    @property
    def optimal_tokens(self) -> float | None:
        return None if self.optimal_params is None else self.flops / (6.0 * self.optimal_params)


@dataclass(frozen=True)
class PowerLaw:
    """``y = coefficient · C^exponent``, fitted in log10 space; ``exponent_se`` from the
    least-squares covariance (None with only two budgets)."""

    coefficient: float
    exponent: float
    exponent_se: float | None

    def __call__(self, flops):
        return self.coefficient * np.asarray(flops, float) ** self.exponent


@dataclass(frozen=True)
class Approach2Fit:
    profiles: list
    params_law: PowerLaw
    tokens_law: PowerLaw
    skipped: list = field(default_factory=list)  # (flops, reason) of budgets left out


def group_budgets(flops: np.ndarray, budget: np.ndarray | None = None) -> list[np.ndarray]:
    """Indices of points per isoFLOP budget, smallest budget first: by the explicit ``budget``
    values when given, else by clustering log10 FLOPs within BUDGET_TOLERANCE_DECADES."""
    key = np.log10(np.asarray(budget if budget is not None else flops, float))
    order = np.argsort(key, kind="stable")
    groups, current = [], [order[0]]
    for previous, index in zip(order[:-1], order[1:]):
        if key[index] - key[previous] > (BUDGET_TOLERANCE_DECADES if budget is None else 0.0):
            groups.append(np.array(current))
            current = []
        current.append(index)
    groups.append(np.array(current))
    return groups


def fit_profile(flops: float, params: np.ndarray, loss: np.ndarray) -> IsoflopProfile:
    """Parabola through (log10 N, L) for one budget (≥ 3 distinct N)."""
    x = np.log10(params)
    c2, c1, c0 = np.polyfit(x, loss, 2)
    if c2 <= 0:
        optimal_params = optimal_loss = None
        interior = False
    else:
        vertex = -c1 / (2 * c2)
        optimal_params = float(10 ** vertex)
        optimal_loss = float(c0 - c1 * c1 / (4 * c2))
        interior = bool(x.min() <= vertex <= x.max())
    return IsoflopProfile(flops=float(flops), params=params, loss=loss,
                          coefficients=(float(c2), float(c1), float(c0)),
                          optimal_params=optimal_params, optimal_loss=optimal_loss,
                          interior=interior)


def fit_power_law(flops: np.ndarray, values: np.ndarray) -> PowerLaw:
    x, y = np.log10(flops), np.log10(values)
    if len(x) > 2:
        (slope, intercept), covariance = np.polyfit(x, y, 1, cov=True)
        slope_se = float(np.sqrt(covariance[0, 0]))
    else:
        slope, intercept = np.polyfit(x, y, 1)
        slope_se = None
    return PowerLaw(coefficient=float(10 ** intercept), exponent=float(slope),
                    exponent_se=slope_se)


def usable_profiles(params, loss, flops, budget=None) -> tuple[list, list]:
    """Profiles with a minimum, and (budget FLOPs, reason) for each budget left out."""
    params, loss, flops = (np.asarray(x, float) for x in (params, loss, flops))
    if budget is not None:  # runs without a planned budget (extra runs) are no isoFLOP point
        budget = np.asarray(budget, float)
        keep = np.isfinite(budget)
        if not keep.any():
            return [], []
        params, loss, flops, budget = params[keep], loss[keep], flops[keep], budget[keep]
    profiles, skipped = [], []
    for index in group_budgets(flops, budget):
        group_flops = float(budget[index][0]) if budget is not None else \
            float(10 ** np.mean(np.log10(flops[index])))
        if len(np.unique(params[index])) < MIN_SIZES_PER_BUDGET:
            skipped.append((group_flops, f"fewer than {MIN_SIZES_PER_BUDGET} distinct sizes"))
            continue
        profile = fit_profile(group_flops, params[index], loss[index])
        if profile.optimal_params is None:
            skipped.append((group_flops, "loss is not convex in log N (no minimum)"))
            continue
        profiles.append(profile)
    return profiles, skipped


def fit_approach2(params, loss, flops, budget=None) -> Approach2Fit | None:
    """Profiles per budget and the power laws of their minima; None when fewer than
    MIN_BUDGETS budgets have a minimum (the caller decides whether that is an error)."""
    profiles, skipped = usable_profiles(params, loss, flops, budget)
    if len(profiles) < MIN_BUDGETS:
        return None
    budgets = np.array([p.flops for p in profiles])
    params_law = fit_power_law(budgets, np.array([p.optimal_params for p in profiles]))
    tokens_law = fit_power_law(budgets, np.array([p.optimal_tokens for p in profiles]))
    return Approach2Fit(profiles=profiles, params_law=params_law, tokens_law=tokens_law,
                        skipped=skipped)
