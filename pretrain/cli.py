"""`slm`: the command line. Each subcommand lives in its own module under `pretrain/commands/`
and registers itself with `add_parser(subparsers)`; this file only dispatches and turns user
mistakes into one line `error: ...` with exit status 2."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from pretrain.errors import user_error_types

# Subcommand name -> module in pretrain/commands, in the order of the flow (and `slm --help`).
COMMANDS = {
    "model": "pretrain.commands.model",
    "tokenizer": "pretrain.commands.tokenizer",
    "data": "pretrain.commands.data",
    "pretrain": "pretrain.commands.pretrain",
    "export": "pretrain.commands.export",
    "generate": "pretrain.commands.generate",
    "eval": "pretrain.commands.eval",
    "distill": "pretrain.commands.distill",
    "bench": "pretrain.commands.bench",
    "sweep": "pretrain.commands.sweep",
    "slurm": "pretrain.commands.slurm",
    "release": "pretrain.commands.release",
}
# Subcommands that own their whole argument list (LightningCLI parses it, not argparse):
# name -> help line; their module exposes `run(argv)` instead of `add_parser`.
PASSTHROUGH = {
    "pretrain": "train a model: --config FILE.yaml [--section.key value ...] [--ckpt_path last]",
}


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports a bad flag as one `error:` line (exit 2) instead of usage + error."""

    def error(self, message: str):
        self.exit(2, f"error: {message} ({self.prog})\n")


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="slm", description="Pretrain small Llama-style language models.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=ArgumentParser)
    sub.required = True
    for name, module in COMMANDS.items():
        if name in PASSTHROUGH:
            sub.add_parser(name, help=PASSTHROUGH[name], add_help=False)
        else:
            importlib.import_module(module).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if argv and argv[0] in PASSTHROUGH:
            module = importlib.import_module(COMMANDS[argv[0]])
            return module.run(argv[1:]) or 0
        args = build_parser().parse_args(argv)
        if args.verbose:
            logging.getLogger().setLevel(logging.DEBUG)
        return args.func(args) or 0
    except user_error_types() as e:
        print(f"error: {_message(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


def _message(error: BaseException) -> str:
    """The error's one line. A DataLoader worker re-raises a user error with the worker's whole
    traceback as its message; the original one line is that traceback's last line."""
    text = str(error)
    if "\nOriginal Traceback" in text:
        last = text.rstrip().splitlines()[-1]
        prefix = f"{type(error).__module__}.{type(error).__qualname__}: "
        return last[len(prefix):] if last.startswith(prefix) else last
    return text


if __name__ == "__main__":
    sys.exit(main())
