"""`slm tokenizer train | encode | bench`: train a sentencepiece BPE tokenizer, inspect how it
splits a text, and measure its encoding throughput."""

from __future__ import annotations

import json
import sys

from pretrain.commands.corpus_args import add_corpus_arguments


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("tokenizer", help="train, inspect and benchmark tokenizers")
    sub = parser.add_subparsers(dest="tokenizer_command", metavar="ACTION", required=True)

    train = sub.add_parser("train", help="train a Llama-style sentencepiece BPE tokenizer")
    add_corpus_arguments(train, skips_recorded_in="tokenizer_meta.json")
    train.add_argument("--vocab-size", type=int, required=True, metavar="N")
    train.add_argument("--output", required=True, metavar="DIR")
    train.add_argument("--max-sentences", type=int, metavar="N",
                       help="train on a seeded uniform sample of at most N lines "
                            "(default 2,000,000)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--special-token", action="append", default=[], metavar="TOKEN",
                       help="extra special token (ids 3, 4, ... in order); repeatable")
    train.add_argument("--overwrite", action="store_true", help="replace a non-empty --output")
    train.add_argument("--threads", type=int, metavar="N",
                       help="sentencepiece training threads (default 16; stored in the model)")
    train.set_defaults(func=run_train)

    encode = sub.add_parser("encode", help="print the ids and pieces of a text")
    encode.add_argument("tokenizer", metavar="DIR", help="tokenizer dir or .model file")
    encode.add_argument("--text", required=True)
    encode.add_argument("--bos", action="store_true", help="prepend BOS")
    encode.add_argument("--eos", action="store_true", help="append EOS")
    encode.add_argument("--json", action="store_true", help="print one JSON object")
    encode.set_defaults(func=run_encode)

    bench = sub.add_parser("bench", help="encoding tokens/s: ours vs bare sentencepiece")
    bench.add_argument("tokenizer", metavar="DIR", help="tokenizer dir or .model file")
    bench.add_argument("--input", nargs="+", required=True, metavar="PATH")
    bench.add_argument("--text-key", default="text")
    bench.add_argument("--max-documents", type=int, default=20_000, metavar="N")
    bench.add_argument("--batch-size", type=int, default=256, metavar="N")
    bench.add_argument("--threads", type=int, default=1, metavar="N",
                       help="threads for the batch API (1 = per-core figure)")
    bench.add_argument("--repeats", type=int, default=3, metavar="N")
    bench.add_argument("--json", action="store_true")
    bench.set_defaults(func=run_bench)


def run_train(args) -> int:
    import tokenizer
    from tokenizer.train import DEFAULT_MAX_SENTENCES, META_FILE

    max_sentences = DEFAULT_MAX_SENTENCES if args.max_sentences is None else args.max_sentences
    output = tokenizer.train(
        args.input, args.vocab_size, args.output, text_key=args.text_key,
        max_sentences=max_sentences, seed=args.seed, special_tokens=args.special_token,
        overwrite=args.overwrite, skip_bad_lines=args.skip_bad_lines, num_threads=args.threads,
        exclude_sets=args.exclude_set)
    meta = json.loads((output / META_FILE).read_text())
    print(f"wrote {output}: vocab {meta['vocab_size']}, trained on {meta['sentences_sampled']:,} "
          f"of {meta['sentences_seen']:,} lines from "
          f"{sum(i['documents'] for i in meta['inputs']):,} documents in "
          f"{len(meta['inputs'])} files; fingerprint {meta['fingerprint'][:16]}")
    return 0


def run_encode(args) -> int:
    import tokenizer

    tok = tokenizer.load(args.tokenizer)
    ids = tok.encode(args.text, bos=args.bos, eos=args.eos)
    pieces = [tok.id_to_piece(i) for i in ids]
    if args.json:
        print(json.dumps({"ids": ids, "pieces": pieces}, ensure_ascii=False))
        return 0
    print(f"{len(ids)} tokens")
    for token_id, piece in zip(ids, pieces):
        print(f"{token_id}\t{piece}")
    return 0


def run_bench(args) -> int:
    import platform

    import tokenizer
    from tokenizer.bench import measure_throughput, read_texts

    if args.max_documents < 1 or args.batch_size < 1 or args.threads < 1 or args.repeats < 1:
        raise tokenizer.TokenizerError("--max-documents, --batch-size, --threads and --repeats "
                                       "must be at least 1")
    tok = tokenizer.load(args.tokenizer)
    texts = read_texts(args.input, args.max_documents, args.text_key)
    result = measure_throughput(tok, texts, batch_size=args.batch_size, threads=args.threads,
                                repeats=args.repeats)
    result["cpu"] = _cpu_model() or platform.processor()
    if args.json:
        json.dump(result, sys.stdout, indent=2)
        print()
        return 0
    print(f"{result['documents']:,} documents, {result['characters']:,} characters, "
          f"{result['tokens']:,} tokens; {args.threads} thread(s); {result['cpu']}")
    for name, rate in result["tokens_per_s"].items():
        print(f"{name:>24}: {rate / 1e6:7.3f} M tokens/s")
    print(f"wrapper overhead: encode {result['encode_overhead']:+.1%}, "
          f"encode_batch {result['encode_batch_overhead']:+.1%}")
    return 0


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None
