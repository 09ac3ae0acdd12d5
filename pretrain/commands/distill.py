"""`slm distill cache`: a teacher's top-K log-probabilities for every training token of the
shards, for cached distillation (`distill.cache:` in an `slm pretrain` recipe)."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("distill", help="knowledge distillation: cache a teacher")
    sub = parser.add_subparsers(dest="distill_command", metavar="ACTION", required=True)

    cache = sub.add_parser(
        "cache", help="store a teacher's top-K log-probabilities aligned with the shards",
        description="Run the teacher over every training sample slot of the shards and store "
                    "its top-K next-token log-probabilities and ids. Resumable (rerun the same "
                    "command); the output is identical for any --workers.")
    cache.add_argument("--teacher", required=True, metavar="DIR",
                       help="HF Llama directory, run directory or checkpoint")
    cache.add_argument("--data", required=True, metavar="DIR", help="prepared token shards")
    cache.add_argument("--top-k", required=True, type=int, metavar="K",
                       help="ids kept per token (each costs 4 bytes per token with uint16 ids)")
    cache.add_argument("--output", required=True, metavar="DIR")
    cache.add_argument("--seq-len", type=int, metavar="N",
                       help="the student's training seq_len: the teacher's context windows are its "
                            "samples (default: the seq_len the teacher itself was trained at, from "
                            "its checkpoint, else its max positions)")
    cache.add_argument("--document-masking", action=argparse.BooleanOptionalAction,
                       default=False, help="attention within documents, as model.document_masking")
    cache.add_argument("--split", default="train", choices=("train", "val"))
    cache.add_argument("--workers", type=int, default=1, metavar="N",
                       help="processes (one GPU each on CUDA); the output is identical for any N")
    cache.add_argument("--threads-per-worker", type=int, default=None, metavar="N",
                       help="CPU threads of each worker (default: cores / workers)")
    cache.add_argument("--batch-size", type=int, default=8, metavar="N",
                       help="sample slots per teacher forward (recorded: the bytes depend on it)")
    cache.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                       help="auto: cuda if available (teacher in bf16), else cpu (fp32)")
    cache.set_defaults(func=run_cache)


def run_cache(args) -> int:
    import torch

    from pretrain.distill.cache import CacheJob, build_cache

    seq_len = args.seq_len or default_seq_len(args.teacher)
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    job = CacheJob(teacher=args.teacher, data=args.data, top_k=args.top_k, seq_len=seq_len,
                   split=args.split, batch_size=args.batch_size,
                   document_masking=args.document_masking, device=device,
                   compute_dtype="bfloat16" if device == "cuda" else "float32")
    manifest = build_cache(job, args.output, workers=args.workers,
                           threads_per_worker=args.threads_per_worker)
    rows = sum(s["rows"] for s in manifest["shards"])
    print(f"{args.output}: {rows:,} tokens × top-{manifest['top_k']} at seq_len {seq_len}, "
          f"{manifest['bytes_per_token']} bytes per token")
    return 0


def default_seq_len(teacher: str) -> int:
    """The seq_len our checkpoint's run trained at, else the teacher model's max positions."""
    from pretrain.distill.teacher import teacher_config, teacher_kind

    if teacher_kind(teacher) == "checkpoint":
        from pretrain.training.checkpoint.layout import read_checkpoint_meta

        trained = ((read_checkpoint_meta(teacher).get("config") or {}).get("data") or {}).get("seq_len")
        if trained:
            return int(trained)
    return teacher_config(teacher).max_seq_len
