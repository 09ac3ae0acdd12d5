"""`slm eval --checkpoint PATH --task NAME=FILE [...]`: downstream benchmark accuracy."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "eval", help="benchmark accuracy of a checkpoint, a run's checkpoints or an HF directory",
        description="Zero-shot multiple-choice accuracy (acc, acc_norm), bits per byte and their "
                    "standard errors, scored as lm-evaluation-harness 0.4's hf backend scores them.")
    parser.add_argument("--checkpoint", required=True,
                        help="a checkpoint directory, a run directory (every complete checkpoint, in "
                             "token order; writes RUN_DIR/eval.csv and eval.png, skips those done) "
                             "or a Hugging Face model directory")
    parser.add_argument("--task", action="append", required=True, metavar="NAME=FILE",
                        help="a benchmark (hellaswag, arc_easy, arc_challenge, piqa, winogrande, "
                             "boolq, openbookqa, sciq, lambada_openai, lambada_standard) with FILE "
                             "in its public format, or any other NAME with a generic JSONL file "
                             '{"query", "choices", "gold"} per line; repeatable')
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--samples", default=None, metavar="DIR",
                        help="write DIR/NAME.jsonl: per-item log-likelihoods (DIR/CHECKPOINT/NAME.jsonl "
                             "for a run directory)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N items of each task")
    parser.add_argument("--batch-size", type=int, default=32, help="requests per forward (default 32)")
    parser.add_argument("--tokenizer", default=None,
                        help="tokenizer directory (default: the checkpoint's, or the HF directory)")
    parser.add_argument("--bos", action=argparse.BooleanOptionalAction, default=None,
                        help="BOS before every context or not (lm-eval's add_bos_token=True/False); "
                             "default: as the tokenizer's files say, as lm-eval does by default")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N (default: cuda if available)")
    parser.add_argument("--compare-lm-eval", type=int, default=None, metavar="ROUNDS",
                        help="with an HF directory on the CPU: time ROUNDS alternating passes of ours "
                             "and of lm-evaluation-harness's hf backend over the same items; print items/s")
    parser.set_defaults(func=run)


def parse_task_specs(specs: list[str]) -> list[tuple[str, Path]]:
    from pretrain.errors import PretrainError

    out, names = [], set()
    for spec in specs:
        name, sep, file = spec.partition("=")
        if not sep or not name or not file:
            raise PretrainError(f"a task is NAME=FILE, got {spec!r} (--task)")
        if name in names:
            raise PretrainError(f"task {name!r} given twice (--task)")
        names.add(name)
        out.append((name, Path(file)))
    return out


def run(args) -> int:
    import torch

    from pretrain.errors import PretrainError
    from pretrain.eval.benchmarks import load_task
    from pretrain.eval.session import Session

    if args.limit is not None and args.limit < 1:
        raise PretrainError(f"--limit must be at least 1, got {args.limit} (--limit)")
    if args.batch_size < 1:
        raise PretrainError(f"--batch-size must be at least 1, got {args.batch_size} (--batch-size)")
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    elif device.startswith("cuda") and not torch.cuda.is_available():
        raise PretrainError(f"no CUDA device here (--device {device})")
    tasks = [load_task(name, file, args.limit) for name, file in parse_task_specs(args.task)]
    if args.compare_lm_eval is not None:
        return compare(args, tasks)
    session = Session(Path(args.checkpoint), tasks, batch_size=args.batch_size, bos=args.bos,
                      samples_dir=Path(args.samples) if args.samples else None,
                      tokenizer_dir=Path(args.tokenizer) if args.tokenizer else None,
                      device=device, progress=not args.json and sys.stderr.isatty())
    evaluated = session.run()
    if args.json:
        print(json.dumps(json_report(session, evaluated), indent=2))
    else:
        print(table(evaluated))
        if session.run_dir:
            print(f"\n{session.run_dir / 'eval.csv'}\n{session.run_dir / 'eval.png'}")
    return 0


def compare(args, tasks) -> int:
    from pretrain.errors import PretrainError
    from pretrain.eval.speed import compare_with_lm_eval
    from pretrain.eval.targets import resolve_targets

    (target,) = resolve_targets(args.checkpoint, args.tokenizer)
    if not target.is_hf or args.compare_lm_eval < 1:
        raise PretrainError("--compare-lm-eval takes ROUNDS >= 1 and an HF model directory as "
                            "--checkpoint (lm-eval loads it with transformers) (--compare-lm-eval)")
    report = compare_with_lm_eval(target.path, tasks, args.batch_size, args.compare_lm_eval, args.bos)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{report['items']} items ({report['requests']} requests), batch {report['batch_size']}, "
              f"{report['rounds']} alternating rounds:\n"
              f"  slm eval  {report['ours_items_per_s']:8.1f} items/s\n"
              f"  lm-eval   {report['lm_eval_items_per_s']:8.1f} items/s\n"
              f"  ratio     {report['ratio']:8.2f}x   (max |Δ loglikelihood| {report['max_abs_diff']:.1e}; "
              f"BOS {'first' if report['bos'] else 'not added'}, {report['bos_source']})")
    return 0


def _entry(done) -> dict:
    t = done.target
    return {"model": str(t.path), "step": t.step, "tokens": t.tokens, "skipped": done.skipped,
            "bos": done.bos.bos, "bos_source": done.bos.source,
            "wall_s": None if done.skipped else round(done.wall_s, 3), "results": done.results}


def json_report(session, evaluated) -> dict:
    """One object: the newest model's ``results: {NAME: {acc, acc_norm, bpb, stderr, n, ...}}``
    at the top; on a run directory also ``checkpoints``, every checkpoint's entry in token order."""
    report = _entry(evaluated[-1])
    if session.run_dir:
        report["run"] = str(session.run_dir)
        report["checkpoints"] = [_entry(done) for done in evaluated]
    return report


def _cell(value, stderr) -> str:
    if value is None:
        return "-"
    return f"{100 * value:.2f} ± {100 * stderr:.2f}" if stderr is not None else f"{100 * value:.2f}"


def table(evaluated) -> str:
    lines = []
    for done in evaluated:
        t = done.target
        where = t.name if t.step is None else f"{t.name} (step {t.step}, {t.tokens:,} tokens)"
        extra = " — from eval.csv" if done.skipped else f" — {done.wall_s:.1f} s"
        extra += f", BOS {'first' if done.bos.bos else 'not added'} ({done.bos.source})"
        lines.append(f"{where}{extra}")
        lines.append(f"  {'task':<18} {'n':>6} {'acc %':>15} {'acc_norm %':>15} {'bpb':>7} {'cut':>5}")
        for name, m in done.results.items():
            bpb = f"{m['bpb']:.3f}" if m["bpb"] is not None else "-"
            lines.append(f"  {name:<18} {m['n']:>6} {_cell(m['acc'], m['stderr']['acc']):>15} "
                         f"{_cell(m['acc_norm'], m['stderr']['acc_norm']):>15} {bpb:>7} {m['truncated']:>5}")
    return "\n".join(lines)
