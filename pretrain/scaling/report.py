"""``report.md``: the fit summary in words and tables, for a human reading the sweep output."""

from __future__ import annotations


def _value(entry: dict, digits: int = 4) -> str:
    text = f"{entry['value']:.{digits}g}"
    if "se" in entry:
        low, high = entry["ci95"]
        text += f" ± {entry['se']:.2g} (95% CI {low:.{digits}g} – {high:.{digits}g})"
    return text


def render_report(summary: dict, plots: list[str]) -> str:
    a3 = summary["approach3"]
    p = a3["parameters"]
    boot = a3["bootstrap"]
    lines = [
        "# Scaling-law fit",
        "",
        f"Results: `{summary['results']}` ({summary['points']} fitted runs"
        + (f", {len(summary['holdout_runs'])} held out" if summary.get("holdout_runs") else "")
        + f"). N counts {summary.get('params_meaning', 'all parameters')} "
        f"(`--params {summary.get('params_count', 'total')}`); C = 6·N·D, M = D/N.",
        "",
        "## Approach 3: L(N, D) = E + A/N^α + B/D^β",
        "",
        f"Sum over points of Huber(δ = {a3['method']['delta']:g}) of "
        "LSE(a − α log N, b − β log D, e) − log L, minimised with L-BFGS-B from "
        f"{a3['method']['initialisations']} initialisations (Besiroglu et al. 2024 grid); best "
        f"objective {a3['method']['best_objective']:.6g}, fit time {a3['method']['seconds']:.1f} s. "
        f"Uncertainty: {boot['succeeded']}/{boot['resamples']} bootstrap resamples "
        f"(seed {boot['seed']}), each refit from the {boot['starts_per_resample']} best distinct "
        "optima of the full grid.",
        "",
        "| parameter | estimate ± s.e. (95% interval) |",
        "| --- | --- |",
    ]
    for name, label in (("E", "E"), ("A", "A"), ("B", "B"), ("alpha", "α"), ("beta", "β"),
                        ("params_exponent", "a = β/(α+β), N_opt ∝ C^a"),
                        ("tokens_exponent", "b = α/(α+β), D_opt ∝ C^b")):
        lines.append(f"| {label} | {_value(p[name])} |")
    lines += ["", "Compute-optimal frontier (C = 6ND):", "",
              "| C (FLOPs) | N_opt | D_opt | tokens/param | loss |", "| --- | --- | --- | --- | --- |"]
    for row in a3["frontier"]:
        n_ci = f" [{row['params_ci95'][0]:.3g}, {row['params_ci95'][1]:.3g}]" \
            if "params_ci95" in row else ""
        lines.append(f"| {row['flops']:.3g} | {row['params']:.3g}{n_ci} | {row['tokens']:.3g} | "
                     f"{row['tokens_per_param']:.3g} | {row['loss']:.4g} |")
    tiny = a3["tinyllama"]
    lines += ["", f"TinyLlama-like run ({tiny['params']:.3g} parameters as N counts them, "
                  f"{tiny['tokens']:.3g} tokens, {tiny['tokens_per_param']:,.0f} tokens/param, "
                  f"{tiny['flops']:.3g} FLOPs): predicted loss {tiny['predicted_loss']:.4g}; the "
                  f"compute-optimal model at the same compute reaches "
                  f"{tiny['compute_optimal_loss_same_flops']:.4g}."]
    if tiny["compute_optimal_flops_same_loss"]:
        lines[-1] += (f" Reaching TinyLlama's loss compute-optimally needs "
                      f"{tiny['compute_optimal_flops_same_loss']:.3g} FLOPs "
                      f"({tiny['flops'] / tiny['compute_optimal_flops_same_loss']:.2g}× less).")

    a2 = summary.get("approach2")
    lines += ["", "## Approach 2: isoFLOP profiles", ""]
    if a2 is None:
        lines.append("Not requested.")
    elif "skipped" in a2:
        lines.append(f"Skipped: {a2['skipped']}.")
    else:
        lines += ["| C (FLOPs) | runs | N_opt | D_opt | min loss | vertex inside sampled N |",
                  "| --- | --- | --- | --- | --- | --- |"]
        for b in a2["budgets"]:
            lines.append(f"| {b['flops']:.3g} | {b['runs']} | {b['optimal_params']:.3g} | "
                         f"{b['optimal_tokens']:.3g} | {b['optimal_loss']:.4g} | "
                         f"{'yes' if b['vertex_inside_sampled_sizes'] else 'no'} |")
        for key, name in (("params_law", "N_opt"), ("tokens_law", "D_opt")):
            law = a2[key]
            se = f" ± {law['exponent_se']:.2g}" if law["exponent_se"] is not None else ""
            lines.append(f"\n{name} = {law['coefficient']:.3g} · C^{law['exponent']:.3f}{se}")
        for s in a2["skipped_budgets"]:
            lines.append(f"\nBudget {s['flops']:.3g} left out: {s['reason']}.")

    ot = summary.get("overtrain")
    lines += ["", "## Over-training: L(C, M) = E + (a·M^η + b·M^−η)·C^−η (Gadre et al. 2024)", ""]
    if ot is None:
        lines.append("Not requested.")
    elif "skipped" in ot:
        lines.append(f"Skipped: {ot['skipped']}.")
    else:
        q = ot["parameters"]
        lines.append(f"Method: {ot['method']}. Fitted on {ot['fitted_points']} runs: "
                     f"E = {q['E']:.4g}, a = {q['a']:.4g}, b = {q['b']:.4g}, η = {q['eta']:.4g}.")
        if ot["heldout"]:
            lines += ["", "Extrapolation to held-out runs (largest model size):", "",
                      "| run | N | D | M | loss | predicted | relative error |",
                      "| --- | --- | --- | --- | --- | --- | --- |"]
            for h in ot["heldout"]:
                lines.append(f"| {h['run']} | {h['params']:.3g} | {h['tokens']:.3g} | "
                             f"{h['tokens_per_param']:.3g} | {h['loss']:.4g} | "
                             f"{h['predicted_loss']:.4g} | {100 * h['relative_error']:+.2f}% |")
            lines.append(f"\nMean absolute relative error: "
                         f"{100 * ot['heldout_mean_abs_relative_error']:.2f}%.")
        else:
            lines.append("\nNo runs held out (too few would remain to fit).")

    lines += _kaplan_section(summary.get("kaplan"))
    lines += _heldout_section(summary)
    inf = summary["inference_optimal"]
    lines += ["", "## Inference-aware optimum (Sardana et al. 2024)", "",
              f"Minimise 6·N·D_train + 2·N·D_inference subject to L(N, D_train) = "
              f"{inf['target_loss']:.4g} ({inf['target_rule']}), under the approach-3 law.", "",
              "| inference tokens | N | D_train | tokens/param | total FLOPs |",
              "| --- | --- | --- | --- | --- |"]
    for r in inf["rows"]:
        lines.append(f"| {r['inference_tokens']:.3g} | {r['params']:.3g} | {r['tokens']:.3g} | "
                     f"{r['tokens_per_param']:.3g} | {r['total_flops']:.3g} |")
    lines += ["", "## Plots", ""] + [f"![{name}]({name})" for name in plots]
    return "\n".join(lines) + "\n"


def _kaplan_section(kaplan: dict | None) -> list[str]:
    lines = ["", "## Kaplan et al. (2020): L(N, D) = [(N_c/N)^(α_N/α_D) + D_c/D]^α_D", ""]
    if kaplan is None:
        return lines + ["Not requested."]
    if "skipped" in kaplan:
        return lines + [f"Skipped: {kaplan['skipped']}."]
    q, ci = kaplan["parameters"], kaplan["intervals"]

    def value(name, text):
        interval = f" (95% {ci[name][0]:.3g}–{ci[name][1]:.3g})" if name in ci else ""
        return f"{text} = {q[name]:.4g}{interval}"

    return lines + [f"N and D act inside one power, so what more data buys depends on N. Fitted "
                    f"as approach 3 (Huber, L-BFGS-B, {kaplan['method']['initialisations']} "
                    f"starts): " + ", ".join(value(n, t) for n, t in (
                        ("N_c", "N_c"), ("D_c", "D_c"), ("alpha_N", "α_N"),
                        ("alpha_D", "α_D"))) + "."]


def _heldout_section(summary: dict) -> list[str]:
    """The held-out runs: predicted before they were seen, against what they reached."""
    heldout = summary.get("heldout")
    if not heldout:
        return []
    lines = ["", "## Held-out runs: trained with the sweep, never fitted", "",
             "Each law's prediction with its 95% bootstrap interval (the spread of the same "
             "prediction over the bootstrap refits), against the run's final validation loss.",
             "", "| run | N | D | M | C (× largest fitted) | law | predicted [95% interval] | "
             "actual | error | inside |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for h in heldout:
        for p in h["predictions"]:
            interval = "" if p["low"] is None else f" [{p['low']:.4f}, {p['high']:.4f}]"
            lines.append(f"| {h['run']} | {h['params']:.3g} | {h['tokens']:.3g} | "
                         f"{h['multiplier']:.3g} | {h['flops']:.3g} "
                         f"({h['compute_vs_largest_fitted']:.3g}×) | {p['law']} | "
                         f"{p['loss']:.4f}{interval} | {h['actual_loss']:.4f} | "
                         f"{100 * p['relative_error']:+.2f}% | "
                         f"{ {True: 'yes', False: 'no', None: '—'}[p['inside_interval']]} |")
    return lines


def render_batch_report(summary: dict, plots: list[str]) -> str:
    """``report.md`` of a batch-size sweep fit (``pretrain.scaling.fit_batch.summary``)."""
    lines = [
        "# Critical batch size",
        "",
        f"Curves: `{summary['curves']}` ({len(summary['runs'])} runs, sequence length "
        f"{summary['seq_len']}). Noise scale: "
        f"{'`' + summary['noise'] + '`' if summary['noise'] else 'not logged'}.",
        "",
        f"Law: {summary['law']} (McCandlish et al. 2018). Method: {summary['method']}.",
        "",
        "| target loss | runs | S_min (steps) | E_min (tokens) | B_crit (tokens, 95% interval) "
        "| B_crit (sequences) | B_simple at that loss (median over runs) | rms log residual |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for t in summary["targets"]:
        low, high = t["critical_batch_tokens_ci95"]
        interval = "" if low != low else f" [{low:,.0f}, {high:,.0f}]"  # NaN: none
        bound = " (at a bound: outside the sampled batches)" if t["at_bound"] else ""
        simple = t["noise_scale_tokens_median"]
        lines.append(f"| {t['target_loss']:.4f} | {len(t['runs'])} | {t['steps_min']:.4g} | "
                     f"{t['tokens_min']:.4g} | {t['critical_batch_tokens']:,.0f}{interval}{bound} | "
                     f"{t['critical_batch_sequences']:.3g} | "
                     f"{'—' if simple is None else f'{simple:,.0f}'} | "
                     f"{t['rms_log_residual']:.3f} |")
    for s in summary["skipped_targets"]:
        lines.append(f"\nTarget {s['target_loss']:.4f} left out: {s['reason']}.")
    lines += ["", "| run | batch (tokens) | final validation loss | noise scale logged |",
              "| --- | --- | --- | --- |"]
    for r in summary["runs"]:
        lines.append(f"| {r['run']} | {r['batch_tokens']:,} | {r['final_loss']:.4f} | "
                     f"{'yes' if r['noise_scale_logged'] else 'no'} |")
    lines += ["", "## Plots", ""] + [f"![{name}]({name})" for name in plots]
    return "\n".join(lines) + "\n"
