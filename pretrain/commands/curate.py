"""`slm data curate` and `slm data noisy-demo`: registered under `slm data` by
`pretrain.commands.data`; the work is in `data.curate`."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from pretrain.commands.corpus_args import add_corpus_arguments
from pretrain.errors import PretrainError


def add_curate_parsers(sub) -> None:
    curate = sub.add_parser("curate", help="filters, exact + near-dedup and a perplexity band "
                                           "(datatrove) -> DIR/data/*.jsonl.zst + report")
    add_corpus_arguments(curate, skips_recorded_in="DIR/report.json")
    curate.add_argument("--recipe", required=True, metavar="FILE",
                        help="curation recipe YAML (configs/curate/*.yaml)")
    curate.add_argument("--output", required=True, metavar="DIR")
    curate.add_argument("--workers", type=int, default=1, metavar="N",
                        help="tasks run at once (processes); the output is identical for any N")
    curate.add_argument("--tasks", type=int, default=8, metavar="N",
                        help="pieces the corpus is split into (default 8); the output depends "
                             "on it, so resume with the same N")
    curate.add_argument("--reference-model", metavar="DIR", default=None,
                        help="the band's reference model: an `slm pretrain` checkpoint (or run "
                             "dir) or an `slm export` directory")
    curate.add_argument("--overwrite", action="store_true",
                        help="replace an --output that holds another run")
    curate.add_argument("--json", action="store_true", help="print the report as JSON")
    slurm = curate.add_argument_group("SLURM (submit the passes as dependent job arrays)")
    slurm.add_argument("--slurm", action="store_true",
                       help="submit to SLURM instead of running here; --workers caps the tasks "
                            "of a pass running at once")
    slurm.add_argument("--partition", help="SLURM partition (required with --slurm)")
    slurm.add_argument("--time", default="04:00:00", help="time limit per task")
    slurm.add_argument("--cpus-per-task", type=int, default=1)
    slurm.add_argument("--mem-per-cpu-gb", type=int, default=2)
    slurm.add_argument("--account")
    slurm.add_argument("--qos")
    curate.set_defaults(func=run_curate)

    noisy = sub.add_parser("noisy-demo", help="the demo corpus with injected noise and "
                                              "near-duplicates (ground truth alongside)")
    noisy.add_argument("--output", required=True, metavar="DIR")
    noisy.add_argument("--max-bytes", type=int, default=None, metavar="N",
                       help="stdlib sources to start from (default: the demo's 12 MB)")
    noisy.add_argument("--seed", type=int, default=0)
    noisy.add_argument("--score", metavar="CURATED_DIR", default=None,
                       help="instead of building: near-dedup precision and recall of a curate "
                            "run of DIR/corpus against DIR/truth.json (JSON)")
    noisy.set_defaults(func=run_noisy_demo)


def run_curate(args) -> int:
    import os

    from data.curate import require_datatrove

    require_datatrove()
    # datatrove's own bars would interleave with our per-pass progress lines; tqdm reads this
    # when it is first imported, which is below (datatrove imports it).
    os.environ.setdefault("TQDM_DISABLE", "1")
    from data.curate.pipeline import curate
    from data.curate.recipe import load_recipe
    from data.curate.report import format_report

    recipe = load_recipe(args.recipe)
    slurm = None
    if args.slurm:
        from data.curate.pipeline import SlurmOptions

        if not args.partition:
            raise PretrainError("--slurm needs --partition (slm data curate)")
        if args.reference_model and not (Path(args.reference_model) / "config.json").is_file():
            raise PretrainError(f"with --slurm, pass the reference model as an `slm export` "
                                f"directory ({args.reference_model})")
        slurm = SlurmOptions(args.partition, args.time, args.cpus_per_task, args.mem_per_cpu_gb,
                             args.account, args.qos, args.workers if args.workers > 1 else -1)
    with tempfile.TemporaryDirectory(prefix="slm-reference-") as scratch:
        reference = _reference_model_dir(args.reference_model, Path(scratch) / "hf")
        report = curate(recipe, args.input, args.output, tasks=args.tasks, workers=args.workers,
                        text_key=args.text_key, skip_bad_lines=args.skip_bad_lines,
                        exclude_sets=tuple(args.exclude_set), reference_model=reference,
                        reference_label=args.reference_model, overwrite=args.overwrite,
                        slurm=slurm)
    if report is None:
        print(f"submitted the curate passes to SLURM; the report will be "
              f"{args.output}/report.json (sbatch scripts and logs in {args.output}/work)")
        return 0
    print(json.dumps(report, indent=1) if args.json else format_report(report))
    if not args.json:
        print(f"wrote {args.output}/data ({len(report['output'])} files), report.json, removed/")
    return 0


def _reference_model_dir(given: str | None, scratch: Path) -> str | None:
    """An HF directory to score with: `given` itself when it is one, else the checkpoint (or
    a run's newest) exported into `scratch` with `slm export`'s code."""
    if given is None:
        return None
    path = Path(given)
    if (path / "config.json").is_file() or not path.exists():
        return given  # an HF directory, or missing: data.curate names the problem
    from pretrain.export import export_checkpoint

    return str(export_checkpoint(path, scratch))


def run_noisy_demo(args) -> int:
    if args.score is not None:
        from data.curate.noisy_corpus import score_run

        print(json.dumps(score_run(Path(args.output), Path(args.score)), indent=1))
        return 0
    from data.curate.noisy_corpus import build_noisy_corpus
    from pretrain.training.demo_data import MAX_CORPUS_BYTES, stdlib_sources

    sources = stdlib_sources(args.max_bytes or MAX_CORPUS_BYTES)
    summary = build_noisy_corpus(Path(args.output), sources, seed=args.seed)
    for key, value in summary.items():
        print(f"{key}: {value:,}" if isinstance(value, int) else f"{key}: {value}")
    return 0
