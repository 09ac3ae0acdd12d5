"""`slm generate --checkpoint PATH --prompt TEXT`: sample a continuation from a checkpoint."""

from __future__ import annotations


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("generate", help="sample text from a checkpoint",
                                   description="Sample a continuation of a prompt from a checkpoint.")
    parser.add_argument("--checkpoint", required=True,
                        help="checkpoint directory (RUN_DIR/checkpoints/<name>) or a run directory (its latest)")
    parser.add_argument("--prompt", required=True, help="text to continue")
    parser.add_argument("--max-new-tokens", type=int, default=64, help="tokens to sample (default 64)")
    parser.add_argument("--temperature", type=float, default=0.8, help="0 = greedy (default 0.8)")
    parser.add_argument("--top-k", type=int, default=50, help="sample among the k likeliest (default 50)")
    parser.add_argument("--top-p", type=float, default=None, help="nucleus sampling threshold")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    parser.add_argument("--tokenizer", default=None,
                        help="tokenizer directory (default: the one the training data was prepared with)")
    parser.set_defaults(func=run)


def run(args) -> int:
    from pretrain.errors import PretrainError
    from pretrain.export import generate_text

    if args.max_new_tokens < 1:
        raise PretrainError(f"--max-new-tokens must be at least 1, got {args.max_new_tokens} (--max-new-tokens)")
    print(generate_text(args.checkpoint, args.prompt, max_new_tokens=args.max_new_tokens,
                        temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                        seed=args.seed, tokenizer_dir=args.tokenizer))
    return 0
