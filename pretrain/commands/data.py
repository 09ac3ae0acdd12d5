"""`slm data prepare | inspect | bench`: corpus -> token shards, what a shard dir holds, and
how fast the stream and prepare run. `curate` and `noisy-demo` live in `commands/curate.py`."""

from __future__ import annotations

import argparse
import json
import shlex
import sys

from pretrain.commands.corpus_args import add_corpus_arguments


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("data", help="prepare, inspect and benchmark token shards; "
                                                "curate a corpus")
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    prepare = sub.add_parser("prepare", help="tokenise a corpus into packed token shards")
    add_corpus_arguments(prepare, skips_recorded_in="the manifest")
    prepare.add_argument("--tokenizer", required=True, metavar="DIR",
                         help="tokenizer dir (slm tokenizer train) or .model file")
    prepare.add_argument("--output", required=True, metavar="DIR")
    prepare.add_argument("--bos", action=argparse.BooleanOptionalAction,
                         default=True, help="BOS at each document start (default: yes, as Llama)")
    prepare.add_argument("--shard-tokens", type=int, metavar="N", default=None,
                         help="tokens per shard (default 134,217,728 = 256 MiB of uint16)")
    prepare.add_argument("--workers", type=int, default=1, metavar="N",
                         help="tokeniser processes; the output is identical for any N")
    split = prepare.add_mutually_exclusive_group()
    split.add_argument("--val-fraction", type=float, default=0.0, metavar="F",
                       help="hold out documents whose text hash falls below F")
    split.add_argument("--val-docs", type=int, default=0, metavar="N",
                       help="hold out the first N documents")
    prepare.add_argument("--overwrite", action="store_true",
                         help="replace a prepared (or half-prepared) --output")
    prepare.set_defaults(func=run_prepare)

    inspect = sub.add_parser("inspect", help="totals, per-input stats, skips, a decoded sample")
    inspect.add_argument("directory", metavar="DIR")
    inspect.add_argument("--json", action="store_true", help="print one JSON object")
    inspect.add_argument("--verify", action="store_true", help="re-hash every file (sha256)")
    inspect.set_defaults(func=run_inspect)

    bench = sub.add_parser("bench", help="stream tokens/s per core and prepare throughput")
    bench.add_argument("directory", metavar="DIR")
    bench.add_argument("--seq-len", type=int, default=2048, metavar="N")
    bench.add_argument("--samples", type=int, default=2000, metavar="N")
    bench.add_argument("--workers", type=int, default=1, metavar="N",
                       help="prepare workers for the prepare figure")
    bench.add_argument("--prepare-inputs", type=int, default=1, metavar="N",
                       help="re-prepare the first N recorded inputs for the prepare figure")
    bench.add_argument("--no-prepare", action="store_true", help="stream figures only")
    bench.add_argument("--json", action="store_true")
    bench.set_defaults(func=run_bench)

    from pretrain.commands.curate import add_curate_parsers

    add_curate_parsers(sub)


def run_prepare(args) -> int:
    from data.prepare import DEFAULT_SHARD_TOKENS, prepare

    manifest = prepare(
        args.input, args.tokenizer, args.output, text_key=args.text_key,
        exclude_sets=args.exclude_set, bos=args.bos,
        shard_tokens=args.shard_tokens or DEFAULT_SHARD_TOKENS, workers=args.workers,
        val_fraction=args.val_fraction, val_docs=args.val_docs,
        skip_bad_lines=args.skip_bad_lines, overwrite=args.overwrite)
    for split, entry in manifest["splits"].items():
        print(f"{split}: {entry['tokens']:,} tokens, {entry['documents']:,} documents, "
              f"{len(entry['shards'])} shards")
    for reason, count in manifest["skipped"].items():
        print(f"skipped {count:,} records: {reason}")
    print(f"wrote {args.output} ({len(manifest['inputs'])} inputs, dtype {manifest['dtype']})")
    return 0


def run_inspect(args) -> int:
    from data.summary import format_summary, summarize

    summary = summarize(args.directory, verify=args.verify)
    print(json.dumps(summary, indent=1, ensure_ascii=False) if args.json
          else format_summary(summary))
    return 0


def run_bench(args) -> int:
    from data.bench import format_bench, run_bench as bench

    result = bench(args.directory, seq_len=args.seq_len, samples=args.samples,
                   prepare_workers=args.workers, prepare_inputs=args.prepare_inputs,
                   with_prepare=not args.no_prepare)
    result["command"] = "slm " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(format_bench(result))
        print(f"command: {result['command']}")
    return 0
