"""The README demo's data, built on first use with no download: the running Python's own
standard-library ``.py`` sources → a sentencepiece tokenizer → packed token shards.

Layout next to the prepared directory ``DIR`` (``data.path``)::

    DIR.parent/stdlib-corpus.jsonl   one {"text": source} document per file, sorted by path
    DIR.parent/tokenizer/            tokenizer.train on that corpus
    DIR/                             data.prepare output (manifest.json marks it complete)

Each step is skipped when its output is already complete, so later runs reuse the data; each
writes under a temporary name first, so an interrupted build resumes cleanly.
"""

from __future__ import annotations

import json
import logging
import os
import sysconfig
from pathlib import Path

log = logging.getLogger(__name__)

# Keep the corpus small enough to prepare in well under a minute on 2 cores; skip the test
# suite and vendored/demo packages so the text is ordinary library code.
MAX_CORPUS_BYTES = 12_000_000
_SKIP_PARTS = {"test", "tests", "idlelib", "site-packages", "dist-packages", "lib2to3",
               "__pycache__", "turtledemo", "ensurepip"}


def stdlib_sources(max_bytes: int = MAX_CORPUS_BYTES) -> list[Path]:
    """The standard library's ``.py`` files in sorted order, up to ``max_bytes`` in total."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files, total = [], 0
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root)
        if _SKIP_PARTS.intersection(relative.parts[:-1]) or not path.is_file():
            continue
        size = path.stat().st_size
        if total + size > max_bytes:
            break
        files.append(path)
        total += size
    return files


def write_corpus(path: Path, max_bytes: int = MAX_CORPUS_BYTES) -> Path:
    from tokenizer.atomic import atomic_file

    if path.exists():
        return path
    with atomic_file(path) as f:
        for source in stdlib_sources(max_bytes):
            text = source.read_text(encoding="utf-8", errors="replace")
            if text.strip():
                f.write(json.dumps({"text": text}) + "\n")
    return path


def ensure_stdlib_demo_data(prepared_dir: Path, vocab_size: int = 4096) -> Path:
    """Build (or reuse) the demo tokenizer and prepared shards at ``prepared_dir``."""
    import tokenizer
    from data.prepare import prepare
    from data.shards import MANIFEST

    prepared_dir = Path(prepared_dir)
    if (prepared_dir / MANIFEST).is_file():
        return prepared_dir
    root = prepared_dir.parent
    root.mkdir(parents=True, exist_ok=True)
    log.info("building the demo data from the Python standard library into %s (first run only)", root)
    corpus = write_corpus(root / "stdlib-corpus.jsonl")
    tokenizer_dir = root / "tokenizer"
    if not (tokenizer_dir / "tokenizer.model").is_file():
        tokenizer.train([corpus], vocab_size, tokenizer_dir, max_sentences=300_000, seed=0)
    prepare([corpus], tokenizer_dir, prepared_dir, val_fraction=0.05,
            workers=max(1, min(2, os.cpu_count() or 1)), shard_tokens=1 << 20)
    return prepared_dir
