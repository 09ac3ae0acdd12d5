"""The critical batch size from a batch-size sweep (McCandlish et al. 2018, "An Empirical Model
of Large-Batch Training", §2.2).

Runs of one model on the same data at global batch sizes B (tokens per step) reach a target loss
after S optimizer steps and E = B·S training tokens. McCandlish et al.'s trade-off,

    (S / S_min − 1) · (E / E_min − 1) = 1,

says that S = S_min + E_min / B: no batch reaches the target in fewer than S_min steps, none on
fewer than E_min tokens, and the critical batch B_crit = E_min / S_min is where a run spends
twice the minimum of both. ``fit_target`` fits (S_min, E_min) to the runs that reach one target
by least squares on log S (every run weighs the same whatever its S), with scipy; the
uncertainty of log B_crit comes from the Jacobian (Student t, n − 2 degrees of freedom).

S for a run at a target loss L*: on the running minimum of the run's validation curve (so the
first crossing is well defined on a noisy curve), the first validation at or below L* and the
one before it bracket the crossing; S is interpolated linearly in loss between them, in log
step (the loss falls roughly linearly in log step; linearly in step when the earlier point is
step 0). A run that never reaches L*, or is below it at its first validation, has no S there.

Input: the ``curves.csv`` of ``slm sweep collect`` (columns run, batch, seq_len, step, val_loss)
and, when the runs logged it (``model.noise_scale: true``), its ``noise.csv`` (run, step,
noise_scale_tokens, noise_scale_sequences): the gradient noise scale B_simple = tr(Σ)/|G|²
(McCandlish et al.'s estimate of B_crit from the gradients themselves) over training.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pretrain.errors import PretrainError

MIN_RUNS = 3  # two parameters: at least one more run than unknowns
DEFAULT_TARGETS = 5
CURVE_COLUMNS = ("run", "batch", "seq_len", "step", "val_loss")
NOISE_COLUMNS = ("run", "step", "noise_scale_tokens")


@dataclass(frozen=True)
class Curve:
    """One run's validation curve: ``steps`` ascending, ``loss`` in nats/token."""

    run: str
    batch: int  # global batch, tokens per step
    seq_len: int
    steps: np.ndarray
    loss: np.ndarray

    def steps_to(self, target: float) -> float | None:
        """Steps to reach ``target`` (module docstring); None if the run does not cross it."""
        best = np.minimum.accumulate(self.loss)
        below = np.flatnonzero(best <= target)
        if len(below) == 0 or below[0] == 0:
            return None
        i = below[0]
        (s0, s1), (l0, l1) = self.steps[i - 1:i + 1], best[i - 1:i + 1]
        fraction = 1.0 if l0 == l1 else (l0 - target) / (l0 - l1)
        if s0 <= 0:
            return float(s0 + fraction * (s1 - s0))
        return float(math.exp(math.log(s0) + fraction * (math.log(s1) - math.log(s0))))

    def loss_at(self, steps) -> np.ndarray:
        """Validation loss interpolated (linearly in step) at ``steps``; NaN outside the curve."""
        return np.interp(steps, self.steps, self.loss, left=np.nan, right=np.nan)


@dataclass(frozen=True)
class TargetFit:
    """The trade-off at one target loss; batches and E in tokens."""

    target_loss: float
    runs: list
    batch: np.ndarray
    steps: np.ndarray  # S of each run
    steps_min: float
    tokens_min: float
    log_critical_se: float | None  # standard error of ln B_crit; None at a bound
    ci95: tuple  # of B_crit in tokens; (nan, nan) when log_critical_se is None
    rms_log_residual: float
    at_bound: bool  # the optimum sits on a bound: B_crit lies outside the sampled batches

    @property
    def tokens(self) -> np.ndarray:
        return self.batch * self.steps

    @property
    def critical_batch(self) -> float:
        return self.tokens_min / self.steps_min

    def predicted_steps(self, batch) -> np.ndarray:
        return self.steps_min + self.tokens_min / np.asarray(batch, float)


@dataclass(frozen=True)
class BatchFit:
    curves: list
    fits: list  # TargetFit per target reached by ≥ MIN_RUNS runs
    skipped: list  # (target, reason)
    noise: dict  # run → (steps, noise_scale_tokens) arrays, {} when not logged

    @property
    def seq_len(self) -> int:
        return self.curves[0].seq_len

    def noise_scale_at(self, target: float) -> float | None:
        """Median over runs of B_simple (tokens) where the run's validation loss crosses
        ``target`` (interpolated in step); None when no run logged it there."""
        values = []
        for curve in self.curves:
            if curve.run not in self.noise:
                continue
            steps_at = curve.steps_to(target)
            steps, scale = self.noise[curve.run]
            if steps_at is None or len(steps) < 2 or not steps[0] <= steps_at <= steps[-1]:
                continue
            values.append(float(np.exp(np.interp(steps_at, steps, np.log(scale)))))
        return float(np.median(values)) if values else None


def _read_csv(path: Path, required, what: str) -> list[dict]:
    if not path.is_file():
        raise PretrainError(f"{what} not found ({path})")
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise PretrainError(f"{what} lacks column(s) {', '.join(missing)}; it has "
                                f"{', '.join(reader.fieldnames or []) or 'no header'} ({path})")
        return list(reader)


def _number(text, column: str, where: str) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise PretrainError(f"{column} is not a number: {text!r} ({where})") from None
    if not math.isfinite(value) or value < 0 or (value == 0 and column != "step"):
        raise PretrainError(f"{column} must be positive and finite, got {text!r} ({where})")
    return value


def read_curves(path) -> list[Curve]:
    """The runs of a batch sweep's curves.csv; one-line PretrainError on a bad file."""
    path = Path(path)
    points: dict = {}
    for line, row in enumerate(_read_csv(path, CURVE_COLUMNS, "curves file"), start=2):
        where = f"{path}:{line}"
        batch, seq_len = (_number(row[c], c, where) for c in ("batch", "seq_len"))
        step, loss = _number(row["step"], "step", where), _number(row["val_loss"], "val_loss", where)
        run = points.setdefault(row["run"], {"batch": batch, "seq_len": seq_len, "points": {}})
        if run["batch"] != batch:
            raise PretrainError(f"run {row['run']} has two batch sizes, {run['batch']:g} and "
                                f"{batch:g} ({where})")
        run["points"][step] = loss
    if not points:
        raise PretrainError(f"curves file has no rows ({path})")
    curves = []
    for name, run in points.items():
        steps = np.array(sorted(run["points"]))
        curves.append(Curve(run=name, batch=int(run["batch"]), seq_len=int(run["seq_len"]),
                            steps=steps, loss=np.array([run["points"][s] for s in steps])))
    if len({c.batch for c in curves}) < MIN_RUNS:
        raise PretrainError(f"a batch-size fit needs runs at ≥ {MIN_RUNS} batch sizes; the "
                            f"curves have {len({c.batch for c in curves})} ({path})")
    return sorted(curves, key=lambda c: c.batch)


def read_noise(path) -> dict:
    """run → (steps, B_simple in tokens) from a noise.csv (rows with a value only)."""
    path = Path(path)
    series: dict = {}
    for line, row in enumerate(_read_csv(path, NOISE_COLUMNS, "noise-scale file"), start=2):
        if not (row["noise_scale_tokens"] or "").strip():
            continue
        where = f"{path}:{line}"
        series.setdefault(row["run"], []).append(
            (_number(row["step"], "step", where),
             _number(row["noise_scale_tokens"], "noise_scale_tokens", where)))
    return {run: tuple(np.array(v) for v in zip(*sorted(values)))
            for run, values in series.items()}


def default_targets(curves: list[Curve], count: int = DEFAULT_TARGETS) -> list[float]:
    """``count`` losses evenly spaced from the median first validated loss (after step 0) down
    to the median final loss: the range that most runs cross."""
    first = [c.loss[c.steps > 0][0] for c in curves if (c.steps > 0).any()]
    final = [np.minimum.accumulate(c.loss)[-1] for c in curves]
    high, low = float(np.median(first)), float(np.median(final))
    if not high > low:
        raise PretrainError("the runs' validation losses do not fall; no target losses to fit "
                            "(pass --target-losses)")
    return [float(x) for x in np.linspace(high, low, count + 2)[1:-1]]


def fit_target(batch, steps, target: float, runs) -> TargetFit:
    """Fit S = S_min + E_min/B (module docstring) to ≥ MIN_RUNS (B, S) points."""
    from scipy import optimize, stats

    batch, steps = np.asarray(batch, float), np.asarray(steps, float)
    tokens = batch * steps
    # Linear least squares of S on 1/B is the start; in logs so both stay positive.
    slope, intercept = np.polyfit(1.0 / batch, steps, 1)
    lower = np.log([steps.min() * 1e-6, tokens.min() * 1e-6])
    upper = np.log([steps.min(), tokens.min()])
    start = np.clip(np.log([max(intercept, steps.min() * 0.1), max(slope, tokens.min() * 0.1)]),
                    lower + 1e-9, upper - 1e-9)

    def residual(x):
        return np.log(np.exp(x[0]) + np.exp(x[1]) / batch) - np.log(steps)

    result = optimize.least_squares(residual, start, bounds=(lower, upper), method="trf",
                                    xtol=1e-12, ftol=1e-12)
    at_bound = bool(np.any(np.isclose(result.x, lower, atol=1e-6) |
                           np.isclose(result.x, upper, atol=1e-6)))
    dof = len(batch) - 2
    rss = float(np.sum(result.fun ** 2))
    log_b = result.x[1] - result.x[0]
    se, ci = None, (math.nan, math.nan)
    if dof > 0 and not at_bound:
        try:
            cov = np.linalg.inv(result.jac.T @ result.jac) * rss / dof
            se = float(math.sqrt(max(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1], 0.0)))
            t = float(stats.t.ppf(0.975, dof))
            ci = (float(math.exp(log_b - t * se)), float(math.exp(log_b + t * se)))
        except np.linalg.LinAlgError:
            se = None
    return TargetFit(target_loss=float(target), runs=list(runs), batch=batch, steps=steps,
                     steps_min=float(math.exp(result.x[0])),
                     tokens_min=float(math.exp(result.x[1])), log_critical_se=se, ci95=ci,
                     rms_log_residual=float(math.sqrt(rss / len(batch))), at_bound=at_bound)


def fit_batch_sweep(curves: list[Curve], targets=None, noise: dict | None = None) -> BatchFit:
    """Fit the trade-off at each target loss reached by at least MIN_RUNS runs."""
    targets = sorted(targets or default_targets(curves), reverse=True)
    fits, skipped = [], []
    for target in targets:
        reached = [(c, c.steps_to(target)) for c in curves]
        reached = [(c, s) for c, s in reached if s is not None]
        if len({c.batch for c, _ in reached}) < MIN_RUNS:
            skipped.append((target, f"reached by runs at {len(reached)} batch size(s), fewer "
                                    f"than {MIN_RUNS}"))
            continue
        fits.append(fit_target([c.batch for c, _ in reached], [s for _, s in reached], target,
                               [c.run for c, _ in reached]))
    return BatchFit(curves=curves, fits=fits, skipped=skipped, noise=noise or {})


def summary(fit: BatchFit, curves_path, noise_path) -> dict:
    """The content of fit.json for a batch sweep."""
    seq_len = fit.seq_len
    targets = []
    for t in fit.fits:
        simple = fit.noise_scale_at(t.target_loss)
        targets.append({
            "target_loss": t.target_loss,
            "runs": [{"run": r, "batch_tokens": int(b), "steps": float(s), "tokens": float(b * s)}
                     for r, b, s in zip(t.runs, t.batch, t.steps)],
            "steps_min": t.steps_min, "tokens_min": t.tokens_min,
            "critical_batch_tokens": t.critical_batch,
            "critical_batch_sequences": t.critical_batch / seq_len,
            "critical_batch_tokens_ci95": list(t.ci95),
            "log_critical_batch_se": t.log_critical_se,
            "rms_log_residual": t.rms_log_residual,
            "at_bound": t.at_bound,
            "noise_scale_tokens_median": simple,
        })
    return {
        "kind": "batch",
        "curves": str(curves_path),
        "noise": str(noise_path) if noise_path else None,
        "law": "(S/S_min - 1)(E/E_min - 1) = 1, i.e. S = S_min + E_min/B; B_crit = E_min/S_min",
        "method": "S per run: first crossing of the running-minimum validation curve, "
                  "interpolated linearly in loss against log step; (S_min, E_min) by least "
                  "squares on log S (scipy least_squares); 95% interval of B_crit from the "
                  "Jacobian, Student t with n-2 degrees of freedom",
        "seq_len": seq_len,
        "runs": [{"run": c.run, "batch_tokens": c.batch, "final_loss": float(c.loss[-1]),
                  "noise_scale_logged": c.run in fit.noise} for c in fit.curves],
        "targets": targets,
        "skipped_targets": [{"target_loss": t, "reason": r} for t, r in fit.skipped],
    }


def write_batch_outputs(fit: BatchFit, curves_path, noise_path, output_dir) -> list:
    """``fit.json``, ``report.md``, ``batch_tradeoff.png`` and ``critical_batch.png``."""
    import json

    from pretrain.scaling.plots import plot_batch_tradeoff, plot_critical_batch
    from pretrain.scaling.report import render_batch_report
    from tokenizer.atomic import write_atomic

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    content = summary(fit, curves_path, noise_path)
    plots = [plot_batch_tradeoff(fit, output_dir / "batch_tradeoff.png"),
             plot_critical_batch(fit, output_dir / "critical_batch.png")]
    fit_json = write_atomic(output_dir / "fit.json", json.dumps(content, indent=2) + "\n")
    report = write_atomic(output_dir / "report.md",
                          render_batch_report(content, [p.name for p in plots]))
    return [fit_json, report, *plots]
