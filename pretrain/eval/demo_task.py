"""A downstream task for the CPU demo's code model, in the generic JSONL format: which line of
Python comes next? The query is a few lines of a source file, the choices are the true next
line and three other lines of the same file, one of them the gold (seeded).

The public benchmarks are English and cannot be downloaded here; the demo model reads only
Python. Point ``--input`` at Python sources it did not train on (another package's files, not
the standard library it was trained on) so the task measures generalisation, not recall:

    python -m pretrain.eval.demo_task --input "$(python -c 'import lightning, os; print(os.path.dirname(lightning.__file__))')" \\
        --output runs/demo-eval/next_line.jsonl --items 300
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from tokenizer.atomic import write_atomic

CONTEXT_LINES = 6
CHOICES = 4


def _usable(line: str) -> bool:
    text = line.strip()
    return 8 <= len(text) <= 100 and not text.startswith("#")


def next_line_items(files: list[Path], n_items: int, seed: int = 0) -> list[dict]:
    """Up to ``n_items`` items ``{query, choices, gold}`` drawn from ``files`` (seeded)."""
    rng = random.Random(seed)
    files = sorted(files)
    rng.shuffle(files)
    items = []
    for path in files:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        usable = [i for i in range(CONTEXT_LINES, len(lines)) if _usable(lines[i])]
        if len(usable) < 2 * CHOICES:
            continue
        target = rng.choice(usable)
        pool = sorted({lines[i] for i in usable} - {lines[target]})
        if len(pool) < CHOICES - 1:
            continue
        choices = [lines[target]] + rng.sample(pool, CHOICES - 1)
        rng.shuffle(choices)
        query = "\n".join(lines[target - CONTEXT_LINES:target]) + "\n"
        items.append({"query": query, "choices": choices, "gold": choices.index(lines[target])})
        if len(items) == n_items:
            break
    return items


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", required=True, help="a directory of .py files (searched recursively)")
    parser.add_argument("--output", required=True, help="the .jsonl file to write")
    parser.add_argument("--items", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    items = next_line_items(list(Path(args.input).rglob("*.py")), args.items, args.seed)
    write_atomic(args.output, "".join(json.dumps(item) + "\n" for item in items))
    print(f"{len(items)} items -> {args.output}")


if __name__ == "__main__":
    main()
