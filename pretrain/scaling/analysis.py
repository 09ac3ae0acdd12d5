"""`slm sweep fit`: run the requested fits on a results file and assemble ``fit.json``.

Fits: ``3`` (Chinchilla approach 3, always possible with ≥ 6 points), ``2`` (isoFLOP
parabolas; needs ≥ 2 budgets with ≥ 3 sizes each), ``overtrain`` (Gadre et al.; ≥ 5 points) and
``kaplan`` (Kaplan et al.'s L(N, D), N and D inside one power; ≥ 5 points). Asked for
explicitly, a fit the data cannot support is a user error; by default (no ``fits``) approach 3
is required and the others run when the data allow, else are recorded as skipped with the
reason.

Held-out runs (the ``holdout`` column: a recipe's ``holdout:`` entries) are left out of every fit
and predicted instead: each gets, per law, the predicted loss, its 95% bootstrap interval and
the relative error against the loss it reached (``fit.json`` ``heldout``). ``fit.json`` also
keeps what `slm sweep predict` needs: the parameter count, the fitted runs' compute range and
every bootstrap refit of each law.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pretrain.errors import PretrainError
from pretrain.scaling import fit_approach2, fit_approach3, fit_kaplan, fit_overtrain
from pretrain.scaling.references import tinyllama_point
from pretrain.scaling.results import Results

FITS = ("3", "2", "overtrain", "kaplan")
DEFAULT_INFERENCE_TOKENS = (0.0, 1e10, 1e11, 1e12, 1e13)
APPROACH2_NEEDS = (f"fewer than {fit_approach2.MIN_BUDGETS} isoFLOP budgets with "
                   f"≥ {fit_approach2.MIN_SIZES_PER_BUDGET} sizes and a minimum")


@dataclass
class Analysis:
    results: Results  # the fitted runs
    approach3: fit_approach3.Approach3Fit
    approach2: fit_approach2.Approach2Fit | None
    overtrain: fit_overtrain.OvertrainFit | None
    kaplan: fit_kaplan.KaplanFit | None
    summary: dict  # the content of fit.json
    heldout: Results | None = None  # the held-out runs (predicted, never fitted)


def parse_fits(text: str | None) -> tuple[str, ...] | None:
    if not text:
        return None
    fits = tuple(item.strip() for item in text.split(",") if item.strip())
    unknown = [f for f in fits if f not in FITS]
    if unknown or not fits:
        raise PretrainError(f"unknown fit(s) {', '.join(unknown) or repr(text)}; choose from "
                            f"{', '.join(FITS)} (--fits)")
    return fits


def default_budgets(results: Results, tinyllama_flops: float) -> list[float]:
    """Whole decades from the smallest run's FLOPs up to 1e24, plus TinyLlama's compute."""
    low = math.floor(math.log10(results.flops.min()))
    budgets = [10.0 ** k for k in range(low, 25)]
    return sorted(set(budgets) | {tinyllama_flops})


def _too_few(results: Results, fit: str, needed: int) -> PretrainError:
    return PretrainError(f"too few points for fit {fit}: {len(results)} in results (not counting "
                         f"held-out runs, which are never fitted), at least {needed} needed "
                         f"({results.path})")


def analyse(results: Results, *, fits=None, bootstrap: int = 100, seed: int = 0,
            budgets=None, target_loss: float | None = None,
            inference_tokens=DEFAULT_INFERENCE_TOKENS,
            holdout_params: float | None = None) -> Analysis:
    requested = set(fits or FITS)
    held = results.held_out
    heldout = results.subset(held) if held.any() else None
    results = results.subset(~held)
    if heldout is not None and holdout_params is None:
        holdout_params = math.inf  # the recipe's held-out runs test the over-training law too
    # Approach 3 underlies the frontier, the inference optimum and the plots: always fitted.
    # Every explicitly requested fit is checked before the slow work starts.
    if len(results) < fit_approach3.MIN_POINTS:
        raise _too_few(results, "3", fit_approach3.MIN_POINTS)
    isoflop_profiles, _ = fit_approach2.usable_profiles(results.params, results.loss,
                                                        results.flops, results.budget)
    approach2_possible = len(isoflop_profiles) >= fit_approach2.MIN_BUDGETS
    if fits is not None and "2" in requested and not approach2_possible:
        raise PretrainError(f"too few points for fit 2: {APPROACH2_NEEDS} ({results.path})")
    for name, needed in (("overtrain", fit_overtrain.MIN_POINTS),
                         ("kaplan", fit_kaplan.MIN_POINTS)):
        if fits is not None and name in requested and len(results) < needed:
            raise _too_few(results, name, needed)
    reference = tinyllama_point(results.count)
    summary: dict = {"results": results.path, "points": len(results),
                     "params_count": results.count,
                     "params_meaning": "all parameters" if results.count == "total"
                     else "non-embedding parameters",
                     "fitted_runs": list(results.run),
                     "holdout_runs": [] if heldout is None else list(heldout.run),
                     "fitted_compute_range": [float(results.flops.min()),
                                              float(results.flops.max())]}

    # Progress goes to stdout: stderr is kept for the one `error:` line of a user mistake.
    print(f"approach 3: fitting {len(results)} points from "
          f"{len(fit_approach3.initial_grid())} initialisations ...", flush=True)
    fit3 = fit_approach3.fit_approach3(results.params, results.tokens, results.loss,
                                       bootstrap=bootstrap, seed=seed)
    print(f"approach 3: fitted in {fit3.seconds:.1f} s; {len(fit3.bootstrap)} bootstrap "
          f"resamples in {fit3.bootstrap_seconds:.1f} s", flush=True)
    budgets = list(budgets) if budgets else default_budgets(results, reference["flops"])
    law = fit3.law
    tiny_loss = float(law.loss(reference["params"], reference["tokens"]))
    summary["approach3"] = {
        "law": "L(N, D) = E + A / N^alpha + B / D^beta",
        "method": {"objective": "sum over points of Huber(delta) of "
                                "LSE(a - alpha log N, b - beta log D, e) - log L",
                   "delta": 1e-3, "optimizer": "scipy L-BFGS-B",
                   "initialisations": fit3.starts, "best_objective": fit3.objective,
                   "converged": fit3.converged, "seconds": round(fit3.seconds, 3)},
        "parameters": fit_approach3.parameter_summary(fit3),
        "bootstrap": {"resamples": bootstrap, "succeeded": len(fit3.bootstrap), "seed": seed,
                      "starts_per_resample": fit_approach3.BOOTSTRAP_STARTS,
                      "seconds": round(fit3.bootstrap_seconds, 3)},
        "bootstrap_laws": [[b.E, b.A, b.B, b.alpha, b.beta] for b in fit3.bootstrap],
        "frontier": fit_approach3.frontier_table(fit3, budgets),
        "tinyllama": {**reference, "predicted_loss": tiny_loss,
                      "compute_optimal_loss_same_flops":
                          float(law.optimal_loss(reference["flops"])),
                      "compute_optimal_flops_same_loss":
                          float(law.optimal_flops_for_loss(tiny_loss)) if tiny_loss > law.E
                          else None},
    }

    fit2 = None
    if "2" in requested:
        if approach2_possible:
            fit2 = fit_approach2.fit_approach2(results.params, results.loss, results.flops,
                                               results.budget)
            summary["approach2"] = _approach2_summary(fit2)
        else:
            summary["approach2"] = {"skipped": APPROACH2_NEEDS}

    def optional(name, needed, fit, summarise):
        """Run ``fit`` when requested and the points allow; record it, or why not."""
        if name not in requested:
            return None
        if len(results) < needed:
            summary[name] = {"skipped": f"fewer than {needed} points"}
            return None
        done = fit()
        summary[name] = summarise(done)
        return done

    fit_ot = optional("overtrain", fit_overtrain.MIN_POINTS,
                      lambda: fit_overtrain.fit_overtrain(
                          results.params, results.tokens, results.loss, results.flops,
                          holdout_params, bootstrap=bootstrap, seed=seed),
                      lambda fit: _overtrain_summary(fit, results))
    fit_k = optional("kaplan", fit_kaplan.MIN_POINTS,
                     lambda: fit_kaplan.fit_kaplan(results.params, results.tokens, results.loss,
                                                   bootstrap=bootstrap, seed=seed),
                     _kaplan_summary)

    target = target_loss if target_loss is not None else \
        float(law.optimal_loss(reference["flops"]))
    summary["inference_optimal"] = {
        "target_loss": target,
        "target_rule": "--target-loss" if target_loss is not None else
        "loss of the compute-optimal model at TinyLlama's training compute",
        "rows": [fit_overtrain.inference_optimal(law, target, d).as_dict()
                 for d in inference_tokens],
    }
    if heldout is not None:
        summary["heldout"] = heldout_predictions(heldout, fit3, fit_ot, fit_k, summary)
    return Analysis(results=results, approach3=fit3, approach2=fit2, overtrain=fit_ot,
                    kaplan=fit_k, summary=summary, heldout=heldout)


def heldout_predictions(heldout: Results, fit3, fit_ot, fit_k, summary: dict) -> list[dict]:
    """Per held-out run: what each law predicted (loss, 95% bootstrap interval), what the run
    reached, the relative error (predicted − actual)/actual and whether the interval holds it."""
    from pretrain.scaling.predict import compute_ratio, predict_point

    laws = [("approach3", fit3.law, fit3.bootstrap)]
    if fit_ot is not None:
        laws.append(("overtrain", fit_ot.law, list(fit_ot.bootstrap)))
    if fit_k is not None:
        laws.append(("kaplan", fit_k.law, list(fit_k.bootstrap)))
    rows = []
    largest = summary["fitted_compute_range"][1]
    for i, run in enumerate(heldout.run):
        params, tokens = float(heldout.params[i]), float(heldout.tokens[i])
        actual, flops = float(heldout.loss[i]), 6.0 * params * tokens
        predictions = []
        for name, law, bootstrap in laws:
            p = predict_point(name, law, bootstrap, params, tokens)
            p["relative_error"] = (p["loss"] - actual) / actual
            p["inside_interval"] = None if p["low"] is None else \
                bool(p["low"] <= actual <= p["high"])
            predictions.append(p)
        rows.append({"run": run, "params": params, "tokens": tokens, "flops": flops,
                     "multiplier": tokens / params, "actual_loss": actual,
                     "compute_vs_largest_fitted": flops / largest,
                     "compute_ratio": compute_ratio(flops, summary["fitted_compute_range"]),
                     "predictions": predictions})
    return rows


def _approach2_summary(fit2: fit_approach2.Approach2Fit) -> dict:
    def law(power_law):
        return {"coefficient": power_law.coefficient, "exponent": power_law.exponent,
                "exponent_se": power_law.exponent_se}

    return {
        "budgets": [{"flops": p.flops, "runs": int(len(p.params)),
                     "optimal_params": p.optimal_params, "optimal_tokens": p.optimal_tokens,
                     "optimal_loss": p.optimal_loss, "vertex_inside_sampled_sizes": p.interior,
                     "parabola_log10_params": list(p.coefficients)} for p in fit2.profiles],
        "params_law": law(fit2.params_law),
        "tokens_law": law(fit2.tokens_law),
        "skipped_budgets": [{"flops": f, "reason": r} for f, r in fit2.skipped],
    }


def _overtrain_summary(fit: fit_overtrain.OvertrainFit, results: Results) -> dict:
    heldout = []
    for index, error in zip(fit.heldout_runs, fit.heldout_relative_error):
        heldout.append({"run": results.run[index], "params": float(results.params[index]),
                        "tokens": float(results.tokens[index]),
                        "flops": float(results.flops[index]),
                        "tokens_per_param": float(results.tokens_per_param[index]),
                        "loss": float(results.loss[index]),
                        "predicted_loss": float(results.loss[index] * (1 + error)),
                        "relative_error": float(error)})
    errors = np.abs(fit.heldout_relative_error)
    return {
        "law": "L(C, M) = E + (a M^eta + b M^-eta) C^-eta, M = tokens/params",
        "method": "sum of Huber(1e-3) on log-loss residuals (LSE form), scipy L-BFGS-B from a "
                  "900-point grid, best kept",
        "parameters": fit.law.as_dict(),
        "bootstrap_laws": [[b.E, b.a, b.b, b.eta] for b in fit.bootstrap],
        "fitted_points": int(len(fit.fitted_runs)),
        "heldout": heldout,
        "heldout_mean_abs_relative_error": float(errors.mean()) if len(errors) else None,
    }


def _kaplan_summary(fit: fit_kaplan.KaplanFit) -> dict:
    return {
        "law": "L(N, D) = [(N_c / N)^(alpha_N / alpha_D) + D_c / D]^alpha_D",
        "method": {"objective": "sum over points of Huber(delta) of "
                                "alpha_D LSE(r (log N_c - log N), log D_c - log D) - log L",
                   "delta": 1e-3, "optimizer": "scipy L-BFGS-B",
                   "initialisations": fit.starts, "best_objective": fit.objective,
                   "converged": fit.converged, "seconds": round(fit.seconds, 3)},
        "parameters": fit.law.as_dict(),
        "intervals": _bootstrap_intervals([b.as_dict() for b in fit.bootstrap]),
        "bootstrap_laws": [[b.N_c, b.D_c, b.alpha_N, b.alpha_D] for b in fit.bootstrap],
    }


def _bootstrap_intervals(refits: list[dict]) -> dict:
    """Per parameter, the 2.5th and 97.5th percentiles over the bootstrap refits."""
    if len(refits) < 2:
        return {}
    return {name: [float(x) for x in np.percentile([r[name] for r in refits], [2.5, 97.5])]
            for name in refits[0]}


def write_outputs(analysis: Analysis, output_dir) -> list:
    """``fit.json``, the plots and ``report.md`` into ``output_dir``; returns the paths."""
    import json
    from pathlib import Path

    from pretrain.scaling.plots import write_plots
    from pretrain.scaling.report import render_report
    from tokenizer.atomic import write_atomic

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    plots = write_plots(analysis, output_dir)
    fit_json = write_atomic(output_dir / "fit.json",
                            json.dumps(analysis.summary, indent=2) + "\n")
    report = write_atomic(output_dir / "report.md",
                          render_report(analysis.summary, [p.name for p in plots]))
    return [fit_json, report, *plots]
