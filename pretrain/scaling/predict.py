"""Predictions of final validation loss from fitted laws, before a run is trained.

Used twice: by `slm sweep fit` for the held-out runs of a sweep (trained, never fitted: the test
of the fit) and by `slm sweep predict` for any point (N, D) or every run of a planned sweep,
from the laws that ``fit.json`` stores. Each law gives a point estimate and a 95% interval: the
2.5th and 97.5th percentiles of the same prediction under each bootstrap refit of the law (the
uncertainty of the fitted parameters; a run's own seed-to-seed noise is not in it).

- approach 3: ``L(N, D) = E + A/N^α + B/D^β``;
- over-training (Gadre et al. 2024), where it was fitted: ``L(C, M) = E + (a·M^η + b·M^−η)·C^−η``
  with C = 6·N·D and M = D/N;
- Kaplan et al. (2020), where it was fitted: ``L(N, D) = [(N_c/N)^(α_N/α_D) + D_c/D]^α_D``.

N must be counted as the fit counted it (``fit.json`` ``params_count``: ``total`` or
``non_embedding``). A point whose compute lies outside the fitted runs' range is an
extrapolation; ``compute_ratio`` says by how much (C / largest fitted C above the range,
C / smallest fitted C below it, 1 inside).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from pretrain.errors import PretrainError
from pretrain.scaling.fit_approach3 import ChinchillaLaw
from pretrain.scaling.fit_kaplan import KaplanLaw
from pretrain.scaling.fit_overtrain import OvertrainLaw

FIT_FILE = "fit.json"
LAWS = ("approach3", "overtrain", "kaplan")


def interval(samples) -> tuple[float, float]:
    """The 95% percentile interval of bootstrap predictions (NaNs without a bootstrap)."""
    samples = np.asarray(samples, float)
    samples = samples[np.isfinite(samples)]
    if len(samples) < 2:
        return math.nan, math.nan
    low, high = np.percentile(samples, [2.5, 97.5])
    return float(low), float(high)


def law_loss(law, params, tokens):
    """Loss of ``law`` (either kind) at N = ``params``, D = ``tokens``."""
    params, tokens = np.asarray(params, float), np.asarray(tokens, float)
    if isinstance(law, OvertrainLaw):
        return law.loss(6.0 * params * tokens, tokens / params)
    return law.loss(params, tokens)


def predict_point(name: str, law, bootstrap: list, params: float, tokens: float) -> dict:
    """``{"law", "loss", "low", "high"}`` for one law at one point; ``low`` and ``high`` are
    None without a bootstrap (fewer than 2 refits)."""
    loss = float(law_loss(law, params, tokens))
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        low, high = interval([law_loss(b, params, tokens) for b in bootstrap])
    if math.isnan(low):
        low = high = None
    return {"law": name, "loss": loss, "low": low, "high": high}


def compute_ratio(flops: float, fitted_range) -> float:
    """How far outside the fitted compute range: C/C_max above it, C/C_min below, 1 inside."""
    low, high = fitted_range
    if flops > high:
        return flops / high
    if flops < low:
        return flops / low
    return 1.0


class FittedLaws:
    """The laws of one ``fit.json``: approach 3 and, when fitted, over-training and Kaplan's,
    each with its bootstrap refits, the parameter count they use and the fitted compute range."""

    def __init__(self, fit_dir):
        fit_dir = Path(fit_dir)
        path = fit_dir / FIT_FILE if fit_dir.is_dir() else fit_dir
        if not path.is_file():
            raise PretrainError(f"no {FIT_FILE} (make one with `slm sweep fit`) ({path}: --fit)")
        try:
            summary = json.loads(path.read_text(encoding="utf-8"))
            a3 = summary["approach3"]
            self.laws = {"approach3": (
                ChinchillaLaw(**{k: a3["parameters"][k]["value"]
                                 for k in ("E", "A", "B", "alpha", "beta")}),
                [ChinchillaLaw(*values) for values in a3.get("bootstrap_laws", [])])}
            overtrain = summary.get("overtrain") or {}
            if "parameters" in overtrain:
                self.laws["overtrain"] = (
                    OvertrainLaw(**overtrain["parameters"]),
                    [OvertrainLaw(*values) for values in overtrain.get("bootstrap_laws", [])])
            kaplan = summary.get("kaplan") or {}
            if "parameters" in kaplan:
                self.laws["kaplan"] = (
                    KaplanLaw(**kaplan["parameters"]),
                    [KaplanLaw(*values) for values in kaplan.get("bootstrap_laws", [])])
            self.count = summary.get("params_count", "non_embedding")
            self.compute_range = tuple(float(x) for x in summary["fitted_compute_range"])
        except (ValueError, KeyError, TypeError) as e:
            raise PretrainError(f"not a scaling-law fit.json from this version of `slm sweep "
                                f"fit` (missing or bad {e}); refit the results ({path})") \
                from None
        self.path = path

    def predict(self, run: str, params: float, tokens: float) -> list[dict]:
        """One row per law: the DESIGN.md prediction keys plus ``compute_ratio``."""
        flops = 6.0 * params * tokens
        common = {"run": run, "params": float(params), "tokens": float(tokens), "flops": flops,
                  "multiplier": tokens / params,
                  "compute_ratio": compute_ratio(flops, self.compute_range)}
        return [{**common, **predict_point(name, law, bootstrap, params, tokens)}
                for name, (law, bootstrap) in self.laws.items()]


def plan_points(plan_csv, count: str) -> list[tuple[str, float, float]]:
    """(run, N, D) of every run in a plan.csv, N counted as ``count`` says."""
    import csv

    plan_csv = Path(plan_csv)
    if plan_csv.is_dir():
        plan_csv = plan_csv / "plan.csv"
    if not plan_csv.is_file():
        raise PretrainError(f"plan file not found ({plan_csv}: --plan)")
    column = "params" if count == "total" else "non_embedding_params"
    points = []
    with plan_csv.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        missing = [c for c in ("run", column, "tokens") if c not in header]
        if missing:
            raise PretrainError(f"plan file lacks column(s) {', '.join(missing)} (the fit "
                                f"counts N as {count}); it has {', '.join(header) or 'no header'} "
                                f"({plan_csv})")
        for line, row in enumerate(reader, start=2):
            try:
                params, tokens = float(row[column]), float(row["tokens"])
            except (TypeError, ValueError):
                params = tokens = math.nan
            if not (params > 0 and tokens > 0 and math.isfinite(params * tokens)):
                raise PretrainError(f"{column} and tokens must be positive numbers, got "
                                    f"{row[column]!r} and {row['tokens']!r} ({plan_csv}:{line})")
            points.append((row["run"], params, tokens))
    if not points:
        raise PretrainError(f"plan file has no runs ({plan_csv})")
    return points
