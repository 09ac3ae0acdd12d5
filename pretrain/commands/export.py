"""`slm export --checkpoint PATH --output DIR [--tokenizer DIR]`: a Hugging Face directory."""

from __future__ import annotations


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "export", help="write a checkpoint as a Hugging Face LlamaForCausalLM directory",
        description="Export a training checkpoint (single-file or sharded) to a directory that "
                    "transformers' AutoModelForCausalLM.from_pretrained loads.")
    parser.add_argument("--checkpoint", required=True,
                        help="checkpoint directory (RUN_DIR/checkpoints/<name>) or a run directory (its latest)")
    parser.add_argument("--output", required=True, help="directory to write")
    parser.add_argument("--tokenizer", default=None,
                        help="tokenizer directory (default: the one the training data was prepared with)")
    parser.set_defaults(func=run)


def run(args) -> int:
    from pretrain.export import export_checkpoint

    out = export_checkpoint(args.checkpoint, args.output, args.tokenizer)
    print(out)
    return 0
