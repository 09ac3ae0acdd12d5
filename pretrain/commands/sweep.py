"""`slm sweep plan|run|collect|fit|predict`: scaling-law experiments, from a plan to fitted laws
and to the loss of a run before it is trained.

    slm sweep plan --config configs/scaling/X.yaml --output DIR   # plan.csv + one config per run
    slm sweep run DIR [--slurm ...]                               # train each run (resumable)
    slm sweep collect DIR                                         # DIR/results.csv
    slm sweep fit --results DIR/results.csv --output DIR/fit      # fit.json, report.md, plots
    slm sweep fit --curves DIR/curves.csv --output DIR/fit        # a batch sweep: B_crit
    slm sweep predict --fit DIR/fit (--params N --tokens D | --plan PLAN.csv) [--json]
"""

from __future__ import annotations


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("sweep", help="scaling-law sweeps: plan, run, collect, fit, "
                                                 "predict",
                                   description=__doc__.split("\n\n")[0])
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=type(parser))
    verbs.required = True

    plan = verbs.add_parser("plan", help="plan a sweep: plan.csv + one pretraining config per run")
    plan.add_argument("--config", required=True, help="sweep recipe (configs/scaling/*.yaml)")
    plan.add_argument("--output", required=True, help="sweep directory to create")
    plan.set_defaults(func=run_plan)

    run = verbs.add_parser("run", help="train every planned run that is not finished yet")
    run.add_argument("sweep_dir", help="directory made by `slm sweep plan`")
    run.add_argument("--runs", default=None,
                     help="comma-separated run names to train (default: all)")
    run.add_argument("--train-command", default=None,
                     help="training command each run's `--config FILE --ckpt_path last` is "
                          "appended to (default: this Python's `slm pretrain`)")
    run.add_argument("--jobs", type=int, default=1,
                     help="train up to this many runs at once, each with CPU cores / jobs "
                          "threads (default 1)")
    run.add_argument("--slurm", action="store_true",
                     help="submit the runs as one SLURM job array instead of training here")
    run.add_argument("--slurm-args", default="",
                     help="extra flags for `slm slurm submit` (e.g. \"--partition gpu --time 4:00:00\")")
    run.set_defaults(func=run_run)

    collect = verbs.add_parser("collect", help="final validation loss of each run → results.csv")
    collect.add_argument("sweep_dir", help="directory made by `slm sweep plan`")
    collect.add_argument("--allow-missing", action="store_true",
                         help="skip runs that have not finished instead of failing")
    collect.set_defaults(func=run_collect)

    fit = verbs.add_parser("fit", help="fit scaling laws to a results CSV, or the critical "
                                       "batch to a batch sweep's curves")
    fit.add_argument("--results", default=None,
                     help="CSV with params,tokens,loss (+ flops, run, budget)")
    fit.add_argument("--curves", default=None,
                     help="a batch sweep's curves.csv (kind: batch): fit McCandlish et al.'s "
                          "steps/tokens trade-off and the critical batch instead")
    fit.add_argument("--noise", default=None,
                     help="with --curves: the sweep's noise.csv (default: noise.csv next to "
                          "the curves, when there)")
    fit.add_argument("--target-losses", default=None,
                     help="with --curves: comma list of validation losses to fit the trade-off "
                          "at (default: 5 spaced over the range most runs cross)")
    fit.add_argument("--output", required=True, help="directory for fit.json, report.md, plots")
    fit.add_argument("--fits", default=None,
                     help="comma list of 3,2,overtrain,kaplan (default: 3, plus the others "
                          "when the data allow them)")
    fit.add_argument("--bootstrap", type=int, default=100,
                     help="bootstrap resamples for standard errors (0: none; default 100)")
    fit.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    fit.add_argument("--budgets", default=None,
                     help="comma list of FLOP budgets for the frontier table")
    fit.add_argument("--target-loss", type=float, default=None,
                     help="target loss for the inference-aware optimum (default: the "
                          "compute-optimal loss at TinyLlama's training compute)")
    fit.add_argument("--inference-tokens", default=None,
                     help="comma list of inference token counts (default 0,1e10,1e11,1e12,1e13)")
    fit.add_argument("--holdout-params", type=float, default=None,
                     help="over-training fit: hold out runs with at least this many params "
                          "(default: the largest size)")
    fit.add_argument("--params", dest="count", choices=("total", "non_embedding"),
                     default="total",
                     help="what N counts: all parameters (default; Chinchilla, Epoch, Gadre et "
                          "al.) or non-embedding ones (Kaplan et al.; the results' "
                          "non_embedding_params column); fit.json records it")
    fit.add_argument("--columns", default=None,
                     help="map other column names onto ours, e.g. "
                          "\"params=Model Size,flops=Training FLOP\"")
    fit.set_defaults(func=run_fit)

    predict = verbs.add_parser("predict", help="the final validation loss a run will reach, "
                                               "before it is trained, from a fit")
    predict.add_argument("--fit", required=True, help="output directory of `slm sweep fit` "
                                                      "(or its fit.json)")
    predict.add_argument("--params", type=float, default=None,
                         help="N of the run, counted as the fit counts it (fit.json "
                              "params_count: all or non-embedding parameters)")
    predict.add_argument("--tokens", type=float, default=None, help="D: training tokens")
    predict.add_argument("--plan", default=None,
                         help="a sweep's plan.csv (or its directory): predict every run, N "
                              "taken from the column the fit counts")
    predict.add_argument("--json", action="store_true",
                         help="print a JSON list of {run, params, tokens, flops, multiplier, "
                              "loss, low, high, law} (+ compute_ratio)")
    predict.set_defaults(func=run_predict)


def _floats(text: str | None, flag: str) -> list[float] | None:
    from pretrain.errors import PretrainError

    if text is None:
        return None
    try:
        values = [float(item) for item in text.split(",") if item.strip()]
    except ValueError:
        raise PretrainError(f"expected a comma list of numbers, got {text!r} ({flag})") from None
    if not values:
        raise PretrainError(f"expected a comma list of numbers, got {text!r} ({flag})")
    return values


def run_batch_fit(args) -> int:
    from pathlib import Path

    from pretrain.errors import PretrainError
    from pretrain.scaling import fit_batch

    targets = _floats(args.target_losses, "--target-losses")
    if targets and min(targets) <= 0:
        raise PretrainError("target losses must be positive (--target-losses)")
    curves = fit_batch.read_curves(args.curves)
    noise_path = Path(args.noise) if args.noise else Path(args.curves).with_name("noise.csv")
    if args.noise and not noise_path.is_file():
        raise PretrainError(f"noise-scale file not found ({noise_path}: --noise)")
    noise = fit_batch.read_noise(noise_path) if noise_path.is_file() else {}
    fit = fit_batch.fit_batch_sweep(curves, targets, noise)
    if not fit.fits:
        raise PretrainError(f"no target loss is reached by runs at ≥ {fit_batch.MIN_RUNS} batch "
                            f"sizes ({args.curves}); pass --target-losses the runs reach")
    paths = fit_batch.write_batch_outputs(fit, args.curves, noise_path if noise else None,
                                          args.output)
    for t in fit.fits:
        simple = fit.noise_scale_at(t.target_loss)
        print(f"loss {t.target_loss:.4f}: S_min={t.steps_min:.4g} E_min={t.tokens_min:.4g} "
              f"B_crit={t.critical_batch:,.0f} tokens ({t.critical_batch / fit.seq_len:.3g} "
              f"sequences)" + ("" if simple is None else f"; B_simple {simple:,.0f} tokens"))
    for path in paths:
        print(f"wrote {path}")
    return 0


def run_fit(args) -> int:
    from pretrain.errors import PretrainError
    from pretrain.scaling.results import parse_column_map, read_results

    if (args.results is None) == (args.curves is None):
        raise PretrainError("give exactly one of --results (a scaling-law fit) or --curves "
                            "(a batch sweep's critical batch) (--results, --curves)")
    if args.curves is not None:
        return run_batch_fit(args)
    if args.bootstrap < 0:
        raise PretrainError(f"--bootstrap must be ≥ 0, got {args.bootstrap}")
    budgets = _floats(args.budgets, "--budgets")
    if budgets and min(budgets) <= 0:
        raise PretrainError("budgets must be positive (--budgets)")
    inference_tokens = _floats(args.inference_tokens, "--inference-tokens")
    if inference_tokens and min(inference_tokens) < 0:
        raise PretrainError("inference token counts must be ≥ 0 (--inference-tokens)")
    # Inputs first (numpy only), the fitting stack (scipy, matplotlib) after: mistakes are fast.
    results = read_results(args.results, parse_column_map(args.columns), count=args.count)
    from pretrain.scaling.analysis import DEFAULT_INFERENCE_TOKENS, analyse, parse_fits, \
        write_outputs

    analysis = analyse(results, fits=parse_fits(args.fits), bootstrap=args.bootstrap,
                       seed=args.seed, budgets=budgets, target_loss=args.target_loss,
                       inference_tokens=inference_tokens or DEFAULT_INFERENCE_TOKENS,
                       holdout_params=args.holdout_params)
    paths = write_outputs(analysis, args.output)
    law = analysis.approach3.law
    print(f"N counts {analysis.summary['params_meaning']} (--params {args.count})")
    print(f"approach 3: E={law.E:.4g} A={law.A:.4g} B={law.B:.4g} alpha={law.alpha:.4f} "
          f"beta={law.beta:.4f}  (N_opt ∝ C^{law.params_exponent:.3f}, "
          f"D_opt ∝ C^{law.tokens_exponent:.3f}; fit {analysis.approach3.seconds:.1f} s)")
    if analysis.kaplan is not None:
        k = analysis.kaplan.law
        print(f"kaplan: N_c={k.N_c:.4g} D_c={k.D_c:.4g} alpha_N={k.alpha_N:.4f} "
              f"alpha_D={k.alpha_D:.4f}  (fit {analysis.kaplan.seconds:.1f} s)")
    for h in analysis.summary.get("heldout", []):
        for p in h["predictions"]:
            interval = "" if p["low"] is None else f" [{p['low']:.4f}, {p['high']:.4f}]"
            print(f"held out {h['run']}: {p['law']} predicted {p['loss']:.4f}{interval}, "
                  f"actual {h['actual_loss']:.4f}, error {100 * p['relative_error']:+.2f}%")
    for path in paths:
        print(f"wrote {path}")
    return 0


def run_predict(args) -> int:
    import json
    import math
    import sys

    from pretrain.errors import PretrainError

    if (args.plan is None) == (args.params is None and args.tokens is None):
        raise PretrainError("give either --params N --tokens D or --plan PLAN.csv "
                            "(--params, --tokens, --plan)")
    if args.plan is None:
        if args.params is None or args.tokens is None:
            raise PretrainError("a point needs both --params N and --tokens D (--params, --tokens)")
        for flag, value in (("--params", args.params), ("--tokens", args.tokens)):
            if not (math.isfinite(value) and value > 0):
                raise PretrainError(f"{flag} must be a positive number, got {value:g} ({flag})")
    from pretrain.scaling.predict import FittedLaws, plan_points

    laws = FittedLaws(args.fit)
    points = plan_points(args.plan, laws.count) if args.plan else \
        [("point", args.params, args.tokens)]
    rows = [row for run, params, tokens in points for row in laws.predict(run, params, tokens)]
    meaning = "all parameters" if laws.count == "total" else "non-embedding parameters"
    low, high = laws.compute_range
    outside = sorted({(r["run"], r["compute_ratio"]) for r in rows if r["compute_ratio"] != 1.0})
    for run, ratio in outside:
        where = f"{ratio:.3g}× the largest" if ratio > 1 else f"1/{1 / ratio:.3g} of the smallest"
        print(f"warning: {run}: C = 6ND is outside the fitted compute range "
              f"[{low:.3g}, {high:.3g}] FLOPs ({where} fitted run): an extrapolation",
              file=sys.stderr)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"N counts {meaning}, as the fit ({laws.path}) does; interval: 95% over its "
          f"bootstrap refits")
    print(f"{'run':<28} {'N':>10} {'D':>10} {'C (FLOPs)':>10} {'M':>8} {'law':<10} "
          f"{'loss':>7} {'95% interval':>17} {'C / fitted':>10}")
    for r in rows:
        interval = "—" if r["low"] is None else f"[{r['low']:.4f}, {r['high']:.4f}]"
        print(f"{r['run']:<28} {r['params']:>10.4g} {r['tokens']:>10.4g} {r['flops']:>10.3g} "
              f"{r['multiplier']:>8.3g} {r['law']:<10} {r['loss']:>7.4f} {interval:>17} "
              f"{r['compute_ratio']:>10.3g}")
    return 0


def run_plan(args) -> int:
    from pretrain.scaling.plan import plan_sweep

    plan_csv = plan_sweep(args.config, args.output)
    print(f"wrote {plan_csv}")
    return 0


def run_run(args) -> int:
    import shlex

    from pretrain.scaling.runner import run_sweep, submit_sweep

    runs = [r.strip() for r in args.runs.split(",") if r.strip()] if args.runs else None
    if args.slurm:
        return submit_sweep(args.sweep_dir, runs=runs, slurm_args=args.slurm_args)
    command = shlex.split(args.train_command) if args.train_command else None
    return run_sweep(args.sweep_dir, runs=runs, train_command=command, jobs=args.jobs)


def run_collect(args) -> int:
    from pretrain.scaling.collect import collect_sweep

    path, count = collect_sweep(args.sweep_dir, allow_missing=args.allow_missing)
    print(f"wrote {path} ({count} runs)")
    return 0
