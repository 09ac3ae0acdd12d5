"""The scaling-law figures written by `slm sweep fit` (matplotlib, Agg backend, PNG).

- ``isoflop.png``: loss vs N per isoFLOP budget, the fitted parabolas and their minima;
- ``loss_vs_params_tokens.png``: loss vs N and vs D with the approach-3 law drawn through;
- ``frontier.png``: N_opt(C) and D_opt(C) from approaches 3 and 2 next to Chinchilla's and
  Kaplan's published lines, with TinyLlama's 1.1B/3T point;
- ``loss_vs_compute_by_multiplier.png``: loss and reducible loss vs compute for each
  multiplier M with the over-training law (parallel lines in log-log space; approach 3 at
  fixed M where it was not fitted) and the held-out runs with their predicted intervals;
- ``heldout.png`` (when runs were held out): each held-out run's loss against every law's
  prediction and 95% interval;
- ``overtrained.png``: loss vs compute along the compute-optimal frontier and at fixed M,
  with a TinyLlama-like run (~2,700 tokens/param);
- batch sweeps (``slm sweep fit --curves``): ``batch_tradeoff.png`` (loss curves per batch; steps
  vs tokens to each target loss with McCandlish et al.'s hyperbola) and ``critical_batch.png``
  (B_crit per target loss next to the noise scale each run logged).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pretrain.scaling import references

DPI = 130


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=DPI)
    tmp.replace(path)
    _pyplot().close(fig)
    return path


def _meaning(analysis) -> str:
    return analysis.summary.get("params_meaning", "all parameters")


def _colors(plt, values):
    """One colour per value along a log scale (viridis)."""
    values = np.asarray(values, float)
    logs = np.log10(values)
    span = max(logs.max() - logs.min(), 1e-12)
    return [plt.cm.viridis(0.9 * (v - logs.min()) / span) for v in logs]


def plot_isoflop(analysis, path: Path) -> Path | None:
    fit2 = analysis.approach2
    if fit2 is None:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 5))
    colors = _colors(plt, [p.flops for p in fit2.profiles])
    for profile, color in zip(fit2.profiles, colors):
        ax.scatter(profile.params, profile.loss, color=color, s=22, zorder=3)
        x = np.linspace(np.log10(profile.params.min()) - 0.15,
                        np.log10(profile.params.max()) + 0.15, 100)
        ax.plot(10 ** x, np.polyval(profile.coefficients, x), color=color, lw=1.3,
                label=f"C = {profile.flops:.2g} FLOPs")
        ax.scatter([profile.optimal_params], [profile.optimal_loss], marker="*", s=140,
                   color=color, edgecolor="black", zorder=4)
    ax.set_xscale("log")
    ax.set_xlabel(f"parameters N ({_meaning(analysis)})")
    ax.set_ylabel("final validation loss (nats/token)")
    ax.set_title("IsoFLOP profiles (approach 2); ★ = parabola minimum")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_loss_vs_params_tokens(analysis, path: Path) -> Path:
    plt = _pyplot()
    results, law = analysis.results, analysis.approach3.law
    fig, (left, right, check) = plt.subplots(1, 3, figsize=(17, 5))
    predicted = law.loss(results.params, results.tokens)
    check.scatter(predicted, results.loss, s=16, color="C0")
    span = [min(predicted.min(), results.loss.min()), max(predicted.max(), results.loss.max())]
    check.plot(span, span, color="gray", ls="--", lw=1, label="predicted = measured")
    check.set_xlabel("predicted loss (approach 3)")
    check.set_ylabel("measured loss")
    check.set_title("Fit quality")
    check.grid(True, alpha=0.3)
    check.legend(fontsize=8)
    # Left: loss vs N, curves of the law at a few fixed D; points coloured by D.
    for ax, x, other, x_name, other_name in (
            (left, results.params, results.tokens, f"parameters N ({_meaning(analysis)})", "D"),
            (right, results.tokens, results.params, "training tokens D", "N")):
        levels = np.unique(np.quantile(other, [0.0, 0.5, 1.0]))
        colors = _colors(plt, np.concatenate([levels, other]))
        ax.scatter(x, results.loss, c=colors[len(levels):], s=18, zorder=3)
        grid = np.geomspace(x.min() / 1.5, x.max() * 1.5, 200)
        for level, color in zip(levels, colors[:len(levels)]):
            predicted = law.loss(grid, level) if other_name == "D" else law.loss(level, grid)
            ax.plot(grid, predicted, color=color, lw=1.3, label=f"fit at {other_name} = {level:.3g}")
        ax.axhline(law.E, color="gray", ls=":", lw=1, label=f"E = {law.E:.3g}")
        ax.set_xscale("log")
        ax.set_xlabel(x_name)
        ax.set_ylabel("final validation loss (nats/token)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    left.set_title("Loss vs N (points coloured by D)")
    right.set_title("Loss vs D (points coloured by N)")
    fig.suptitle(f"Approach 3: L = {law.E:.3g} + {law.A:.4g}/N^{law.alpha:.3f} "
                 f"+ {law.B:.4g}/D^{law.beta:.3f}", fontsize=11)
    return _save(fig, path)


def plot_frontier(analysis, path: Path) -> Path:
    plt = _pyplot()
    fit3 = analysis.approach3
    law = fit3.law
    tiny = analysis.summary["approach3"]["tinyllama"]
    low = analysis.results.flops.min() / 3
    high = max(tiny["flops"], analysis.results.flops.max()) * 3
    flops = np.geomspace(low, high, 200)
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 5))
    params_lines = [
        (law.optimal_params(flops), "C0", "-",
         f"approach 3: N ∝ C^{law.params_exponent:.2f}"),
        (references.chinchilla_params(flops), "C3", "--",
         "Chinchilla: N ∝ C^0.5 (20 tokens/param)"),
        (references.kaplan_params(flops), "C2", ":", "Kaplan: N ∝ C^0.73 (PF-day fit)"),
    ]
    for ax, convert, name in ((left, lambda n: n, f"N_opt ({_meaning(analysis)})"),
                              (right, lambda n: flops / (6 * n), "D_opt (training tokens)")):
        for values, color, style, label in params_lines:
            ax.plot(flops, convert(values), color=color, ls=style, lw=1.6, label=label)
        if len(fit3.bootstrap) >= 2:
            samples = np.array([b.optimal_params(flops) for b in fit3.bootstrap])
            lo, hi = np.percentile(samples, [2.5, 97.5], axis=0)
            ax.fill_between(flops, convert(lo), convert(hi), color="C0", alpha=0.2,
                            label="approach 3, bootstrap 95%")
        if analysis.approach2 is not None:
            fit2 = analysis.approach2
            budgets = np.array([p.flops for p in fit2.profiles])
            optimal = np.array([p.optimal_params for p in fit2.profiles])
            ax.scatter(budgets, optimal if name.startswith("N") else budgets / (6 * optimal),
                       color="C1", zorder=4, label="approach 2: isoFLOP minima")
            law2 = fit2.params_law if name.startswith("N") else fit2.tokens_law
            ax.plot(flops, law2(flops), color="C1", lw=1.2,
                    label=f"approach 2: ∝ C^{law2.exponent:.2f}")
        point = tiny["params"] if name.startswith("N") else tiny["tokens"]
        ax.scatter([tiny["flops"]], [point], marker="X", s=110, color="C3", edgecolor="black",
                   zorder=5, label="TinyLlama 1.1B / 3T tokens")
        ax.scatter(analysis.results.flops,
                   analysis.results.params if name.startswith("N") else analysis.results.tokens,
                   s=10, color="gray", alpha=0.6, label="our runs")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("training compute C (FLOPs)")
        ax.set_ylabel(name)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    left.set_title("Compute-optimal model size")
    right.set_title("Compute-optimal training tokens")
    return _save(fig, path)


MAX_MULTIPLIER_GROUPS = 10


def _multiplier_groups(multiplier: np.ndarray) -> list[tuple[float, np.ndarray]]:
    """Runs grouped by M rounded to two significant figures; data with more distinct M than
    MAX_MULTIPLIER_GROUPS (not a fixed-multiplier sweep) go into that many log-spaced bins,
    each drawn at its geometric-mean M."""
    rounded = np.array([float(f"{m:.2g}") for m in multiplier])
    if len(np.unique(rounded)) <= MAX_MULTIPLIER_GROUPS:
        return [(m, np.flatnonzero(rounded == m)) for m in np.unique(rounded)]
    edges = np.linspace(np.log10(multiplier.min()), np.log10(multiplier.max()),
                        MAX_MULTIPLIER_GROUPS + 1)
    bins = np.clip(np.digitize(np.log10(multiplier), edges[1:-1]), 0, MAX_MULTIPLIER_GROUPS - 1)
    groups = []
    for b in np.unique(bins):
        index = np.flatnonzero(bins == b)
        groups.append((float(f"{np.exp(np.mean(np.log(multiplier[index]))):.2g}"), index))
    return groups


def plot_loss_vs_compute_by_multiplier(analysis, path: Path) -> Path:
    """Loss vs compute at fixed tokens/param M: the over-training law's lines (approach 3's at
    fixed M where it was not fitted), the fitted runs, and the held-out runs (★, with the 95%
    interval of their prediction) that the lines extrapolate to."""
    plt = _pyplot()
    results, fit = analysis.results, analysis.overtrain
    heldout = analysis.heldout
    law3 = analysis.approach3.law
    if fit is not None:
        name, key, law, floor = "over-training law", "overtrain", fit.law, fit.law.E

        def curve(flops, m):
            return law.loss(flops, m)
    else:
        name, key, floor = "approach 3 at fixed M", "approach3", law3.E

        def curve(flops, m):
            params = np.sqrt(flops / (6.0 * m))
            return law3.loss(params, m * params)
    all_m = results.tokens_per_param if heldout is None else \
        np.concatenate([results.tokens_per_param, heldout.tokens_per_param])
    all_flops = results.flops if heldout is None else \
        np.concatenate([results.flops, heldout.flops])
    groups = _multiplier_groups(all_m)
    colors = _colors(plt, [m for m, _ in groups] + [1.0])
    internal = set(fit.heldout_runs.tolist()) if fit is not None else set()
    count = len(results)
    predictions = {h["run"]: p for h in analysis.summary.get("heldout", [])
                   for p in h["predictions"] if p["law"] == key}  # the law of the lines
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 5))
    for (m, index), color in zip(groups, colors):
        flops = np.geomspace(all_flops[index].min() / 2, all_flops[index].max() * 2, 50)
        fitted = [i for i in index if i < count and i not in internal]
        extrapolated = [i for i in index if i < count and i in internal]
        held = [i - count for i in index if i >= count]
        for ax, shift in ((left, 0.0), (right, floor)):
            ax.plot(flops, curve(flops, m) - shift, color=color, lw=1.2, label=f"M = {m:g}")
            ax.scatter(results.flops[fitted], results.loss[fitted] - shift, color=color, s=20,
                       zorder=3)
            if extrapolated:
                ax.scatter(results.flops[extrapolated], results.loss[extrapolated] - shift,
                           color=color, s=60, marker="D", edgecolor="black", zorder=4)
            for j in held:
                run = heldout.run[j]
                ax.scatter([heldout.flops[j]], [heldout.loss[j] - shift], color=color, s=220,
                           marker="*", edgecolor="black", zorder=5)
                p = predictions.get(run)
                if p is not None and p["low"] is not None:
                    # the interval as a segment: with few bootstrap refits the point estimate
                    # can fall outside it, which errorbar cannot draw
                    x = heldout.flops[j]
                    ax.plot([x, x], [p["low"] - shift, p["high"] - shift], color="black",
                            lw=1.2, marker="_", ms=10, zorder=4)
                    ax.scatter([x], [p["loss"] - shift], marker="_", s=150, color="black",
                               zorder=4)
                ax.annotate(run, (heldout.flops[j], heldout.loss[j] - shift), fontsize=6,
                            xytext=(4, 4), textcoords="offset points")
    left.set_ylabel("final validation loss (nats/token)")
    right.set_ylabel(f"reducible loss L − E  (E = {floor:.3g})")
    right.set_yscale("log")
    for ax in (left, right):
        ax.set_xscale("log")
        ax.set_xlabel("training compute C = 6ND (FLOPs)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
    left.set_title(f"Loss vs compute per M, {name}\n● fitted  ★ held out (bar: predicted, "
                   f"95%)" + ("  ◆ extrapolated" if internal else ""), fontsize=10)
    slope = f"slope −η = {-fit.law.eta:.3f}" if fit is not None else "approach 3"
    right.set_title(f"Reducible loss, log-log ({slope})", fontsize=10)
    return _save(fig, path)


def plot_overtrained(analysis, path: Path) -> Path:
    plt = _pyplot()
    law = analysis.approach3.law
    tiny = analysis.summary["approach3"]["tinyllama"]
    results = analysis.results
    low = results.flops.min() / 3
    high = tiny["flops"] * 3
    flops = np.geomspace(low, high, 300)
    fig, ax = plt.subplots(figsize=(8, 5.5))
    ax.plot(flops, law.optimal_loss(flops), color="C0", lw=2,
            label="compute-optimal (approach 3 frontier)")
    for m, style in ((references.CHINCHILLA_TOKENS_PER_PARAM, "--"), (tiny["tokens_per_param"], ":")):
        params = np.sqrt(flops / (6 * m))
        ax.plot(flops, law.loss(params, m * params), color="C3", ls=style, lw=1.4,
                label=f"fixed M = {m:,.0f} tokens/param")
    ax.scatter(results.flops, results.loss, s=14, color="gray", alpha=0.7, label="our runs")
    ax.scatter([tiny["flops"]], [tiny["predicted_loss"]], marker="X", s=140, color="C3",
               edgecolor="black", zorder=5,
               label=f"TinyLlama-like: {tiny['params']:.3g} N, 3T tokens (M ≈ "
                     f"{tiny['tokens_per_param']:,.0f})")
    same_loss = tiny["compute_optimal_flops_same_loss"]
    if same_loss:
        ax.scatter([same_loss], [tiny["predicted_loss"]], marker="o", s=80, color="C0",
                   edgecolor="black", zorder=5,
                   label=f"compute-optimal, same loss: {tiny['flops'] / same_loss:.2g}× less compute")
    ax.set_xscale("log")
    ax.set_xlabel("training compute C = 6ND (FLOPs)")
    ax.set_ylabel("predicted loss (nats/token)")
    ax.set_title("Over-training vs compute-optimal under the fitted law")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


LAW_LABELS = {"approach3": "approach 3", "overtrain": "over-training", "kaplan": "Kaplan"}


def plot_heldout(analysis, path: Path) -> Path | None:
    """One row per held-out run: the loss it reached (★) and each law's prediction with its 95%
    bootstrap interval, labelled with the relative error."""
    heldout = analysis.summary.get("heldout")
    if not heldout:
        return None
    plt = _pyplot()
    laws = [law for law in LAW_LABELS if any(p["law"] == law for h in heldout
                                              for p in h["predictions"])]
    fig, ax = plt.subplots(figsize=(9, 1.2 + 1.1 * len(heldout)))
    spread = 0.6 / max(len(laws), 1)
    for row, h in enumerate(heldout):
        ax.scatter([h["actual_loss"]], [row], marker="*", s=260, color="gold",
                   edgecolor="black", zorder=5, label="actual" if row == 0 else None)
        for k, p in enumerate(p for law in laws for p in h["predictions"] if p["law"] == law):
            y = row - 0.3 + spread * (k + 0.5)
            color = f"C{laws.index(p['law'])}"
            if p["low"] is not None:  # a segment: the estimate may lie outside a few refits
                ax.plot([p["low"], p["high"]], [y, y], color=color, lw=1.4, marker="|", ms=8)
            ax.scatter([p["loss"]], [y], color=color, s=40, zorder=4,
                       label=LAW_LABELS[p["law"]] if row == 0 else None)
            ax.annotate(f"{100 * p['relative_error']:+.1f}%", (p["loss"], y), fontsize=7,
                        xytext=(5, 3), textcoords="offset points")
    ax.set_yticks(range(len(heldout)))
    ax.set_yticklabels([f"{h['run']}\nC = {h['compute_vs_largest_fitted']:.3g}× largest fitted"
                        for h in heldout], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("final validation loss (nats/token)")
    ax.grid(True, axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    ax.set_title("Held-out runs: predicted before training (95% bootstrap) against reached",
                 fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def write_plots(analysis, output_dir: Path) -> list[Path]:
    output_dir = Path(output_dir)
    written = [
        plot_isoflop(analysis, output_dir / "isoflop.png"),
        plot_loss_vs_params_tokens(analysis, output_dir / "loss_vs_params_tokens.png"),
        plot_frontier(analysis, output_dir / "frontier.png"),
        plot_loss_vs_compute_by_multiplier(analysis,
                                           output_dir / "loss_vs_compute_by_multiplier.png"),
        plot_heldout(analysis, output_dir / "heldout.png"),
        plot_overtrained(analysis, output_dir / "overtrained.png"),
    ]
    return [path for path in written if path is not None]


def plot_batch_tradeoff(fit, path: Path) -> Path:
    """Left: each run's validation curve against tokens, the target losses dotted. Right: steps
    S vs tokens E to each target, one colour per target, with the fitted hyperbola
    (S/S_min − 1)(E/E_min − 1) = 1 and B_crit = E_min/S_min marked."""
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    batch_colors = _colors(plt, [c.batch for c in fit.curves])
    for curve, color in zip(fit.curves, batch_colors):
        left.plot(curve.steps * curve.batch, curve.loss, color=color, lw=1.3, marker=".",
                  label=f"B = {curve.batch:,} tokens")
    target_colors = plt.cm.plasma(np.linspace(0.05, 0.85, max(len(fit.fits), 1)))
    for t, color in zip(fit.fits, target_colors):
        left.axhline(t.target_loss, color=color, ls=":", lw=1)
        batch = np.geomspace(t.batch.min() / 4, t.batch.max() * 4, 200)
        steps = t.predicted_steps(batch)
        right.plot(steps * batch, steps, color=color, lw=1.3,
                   label=f"L = {t.target_loss:.3f}: B_crit = {t.critical_batch:,.0f}")
        right.scatter(t.tokens, t.steps, color=color, s=22, zorder=3)
        right.scatter([2 * t.tokens_min], [2 * t.steps_min], marker="*", s=140, color=color,
                      edgecolor="black", zorder=4)
    left.set_xscale("log")
    left.set_xlabel("training tokens")
    left.set_ylabel("validation loss (nats/token)")
    left.set_title("Loss curves per global batch size (dotted: target losses)")
    right.set_xscale("log")
    right.set_yscale("log")
    right.set_xlabel("tokens to reach the target, E")
    right.set_ylabel("optimizer steps to reach the target, S")
    right.set_title("(S/S_min − 1)(E/E_min − 1) = 1;  ★ = (2·E_min, 2·S_min) at B_crit")
    for ax in (left, right):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    return _save(fig, path)


def plot_critical_batch(fit, path: Path) -> Path:
    """B_crit at each target loss (with its 95% interval) next to the gradient noise scale
    B_simple that each run logged over training, both against validation loss (training runs
    left to right)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5.5))
    batch_colors = _colors(plt, [c.batch for c in fit.curves])
    for curve, color in zip(fit.curves, batch_colors):
        if curve.run not in fit.noise:
            continue
        steps, scale = fit.noise[curve.run]
        loss = curve.loss_at(steps)
        keep = np.isfinite(loss)
        ax.plot(loss[keep], scale[keep], color=color, lw=1, alpha=0.8,
                label=f"B_simple, run at B = {curve.batch:,}")
    if fit.fits:
        target = np.array([t.target_loss for t in fit.fits])
        critical = np.array([t.critical_batch for t in fit.fits])
        low = np.array([t.ci95[0] for t in fit.fits])
        high = np.array([t.ci95[1] for t in fit.fits])
        error = np.where(np.isfinite(low), [critical - low, high - critical], 0.0)
        ax.errorbar(target, critical, yerr=error, fmt="o-", color="black", lw=2, capsize=4,
                    zorder=5, label="B_crit = E_min/S_min (fit, 95% interval)")
    if not fit.noise:
        ax.text(0.5, 0.05, "no noise scale logged (model.noise_scale: true logs it)",
                transform=ax.transAxes, ha="center", fontsize=9, color="gray")
    ax.set_yscale("log")
    ax.invert_xaxis()
    ax.set_xlabel("validation loss (nats/token; training proceeds to the right)")
    ax.set_ylabel("batch size (tokens)")
    ax.set_title("Critical batch from the sweep vs the gradient noise scale")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, path)
