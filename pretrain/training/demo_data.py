"""The demo corpora, built on first use with no download: Python sources of this machine → a
sentencepiece tokenizer → packed token shards.

- ``stdlib``: the running Python's own standard-library ``.py`` files (12 MB; the README quick
  start). At a 512-token vocabulary it holds 5.8M training tokens, so longer runs repeat it.
- ``site-packages``: the ``.py`` files of the installed Python packages (370 MB with this
  project's dependencies, of which the 266 MB of pure-ASCII files are kept: a 512-piece
  tokenizer has no room for the 10,700 distinct non-ASCII characters of the rest, e.g. 122k
  emoji in one file, and sentencepiece refuses to train below the characters it must cover):
  enough for the CPU scaling demo to train every run on a single epoch. ``max_bytes`` caps
  the files read (tests, quick looks); the cap is recorded with the fingerprint.

Layout next to the prepared directory ``DIR`` (``data.path``)::

    DIR.parent/stdlib-corpus.jsonl        stdlib: one {"text": source} document per file
    DIR.parent/site-packages-corpus/      site-packages: part-NNNNN.jsonl (≤ 16 MB each) and
                                          corpus.json (files, bytes, fingerprint), written last
    DIR.parent/tokenizer/                 tokenizer.train on that corpus
    DIR/                                  data.prepare output (manifest.json marks it complete)

Stdlib files are taken in sorted order of their path. Site-packages files are taken in the order
of a hash of their path relative to their root (sha256): the same for the same installed
packages, and every part, shard, training window and ``max_bytes`` cap is a sample of all
packages, not a stretch of a few (sorted by path, a 4-shard training window held 4 stretches
of the alphabet while validation drew on all of it; ``corpus.json`` records the order, and a
directory built in path order is refused). The corpus fingerprint (sha256 over every file's
relative path and content) is recorded in ``corpus.json`` and logged. Each step is skipped when
its output is complete, so later runs reuse the data; each writes under a temporary name first,
and ``data.prepare`` checkpoints after every part, so an interrupted build resumes where it
stopped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sysconfig
from pathlib import Path

log = logging.getLogger(__name__)

CORPORA = ("stdlib", "site-packages")
# Keep the corpus small enough to prepare in well under a minute on 2 cores; skip the test
# suite and vendored/demo packages so the text is ordinary library code.
MAX_CORPUS_BYTES = 12_000_000
_SKIP_PARTS = {"test", "tests", "idlelib", "site-packages", "dist-packages", "lib2to3",
               "__pycache__", "turtledemo", "ensurepip"}
PART_BYTES = 16_000_000  # site-packages corpus: one jsonl part (a resume point of prepare)
CORPUS_META = "corpus.json"
TOKENIZER_SENTENCES = 300_000
SITE_PACKAGES_ORDER = "sha256 of the relative path"


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


def site_packages_roots() -> list[Path]:
    """The directories installed packages live in (purelib, platlib), each once."""
    paths = sysconfig.get_paths()
    roots = []
    for key in ("purelib", "platlib"):
        root = Path(paths[key]).resolve()
        if root.is_dir() and root not in roots:
            roots.append(root)
    return roots


def site_packages_sources(max_bytes: int | None = None) -> list[tuple[str, Path]]:
    """(relative name, path) of every ``.py`` file under the site-packages roots in the order of
    the sha256 of their name (``__pycache__`` skipped), up to ``max_bytes`` in total (None: all)."""
    found = {}
    for root in site_packages_roots():
        for path in root.rglob("*.py"):
            relative = path.relative_to(root)
            if "__pycache__" in relative.parts or not path.is_file():
                continue
            found.setdefault(relative.as_posix(), path)
    files, total = [], 0
    for name in sorted(found, key=lambda name: hashlib.sha256(name.encode()).digest()):
        size = found[name].stat().st_size
        if max_bytes is not None and total + size > max_bytes:
            break
        files.append((name, found[name]))
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


def write_site_packages_corpus(directory: Path, max_bytes: int | None = None) -> list[Path]:
    """The site-packages corpus as ``part-NNNNN.jsonl`` files in ``directory`` (resumable: a
    finished part is kept); returns the parts. ``corpus.json`` is written last."""
    from tokenizer.atomic import atomic_file, write_json_atomic

    directory = Path(directory)
    meta_path = directory / CORPUS_META
    if meta_path.is_file():
        meta = _site_packages_meta(directory)
        if meta.get("max_bytes") == max_bytes:
            return [directory / name for name in meta["parts"]]
        from pretrain.errors import PretrainError

        raise PretrainError(f"{directory} holds the site-packages corpus capped at "
                            f"{meta.get('max_bytes')} bytes, not {max_bytes}: use another "
                            f"data.path (data.demo_max_bytes)")
    directory.mkdir(parents=True, exist_ok=True)
    sources = site_packages_sources(max_bytes)
    fingerprint = hashlib.sha256()
    parts, batch, batch_bytes, documents, total, kept, skipped = [], [], 0, 0, 0, 0, 0

    def flush() -> None:
        part = directory / f"part-{len(parts):05d}.jsonl"
        parts.append(part)
        if part.is_file():  # written by an interrupted earlier build of the same file list
            return
        with atomic_file(part) as f:
            for text in batch:
                f.write(json.dumps({"text": text}) + "\n")

    for name, path in sources:
        data = path.read_bytes()
        fingerprint.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
        total += len(data)
        if not data.isascii():
            skipped += 1
            continue
        text = data.decode("ascii")
        if not text.strip():
            continue
        batch.append(text)
        batch_bytes += len(data)
        documents += 1
        kept += len(data)
        if batch_bytes >= PART_BYTES:
            flush()
            batch, batch_bytes = [], 0
    if batch:
        flush()
    if not parts:
        from pretrain.errors import PretrainError

        raise PretrainError(f"no .py files found under {', '.join(map(str, site_packages_roots()))} "
                            f"(data.demo_corpus)")
    meta = {"corpus": "site-packages", "roots": [str(r) for r in site_packages_roots()],
            "files": len(sources), "bytes_read": total, "non_ascii_files_skipped": skipped,
            "documents": documents, "bytes": kept,
            "max_bytes": max_bytes, "order": SITE_PACKAGES_ORDER,
            "fingerprint": fingerprint.hexdigest(),
            "parts": [p.name for p in parts]}
    write_json_atomic(meta_path, meta)
    log.info("site-packages corpus: %d documents, %.1f MB (of %d files, %.1f MB; %d non-ASCII "
             "files skipped), fingerprint %s", documents, kept / 1e6, len(sources), total / 1e6,
             skipped, meta["fingerprint"][:16])
    return parts


def _site_packages_meta(directory: Path) -> dict:
    """``corpus.json`` of a built site-packages corpus; refuses one built in path order (by an
    earlier version of this module), whose shards are stretches of the alphabet."""
    meta = json.loads((directory / CORPUS_META).read_text(encoding="utf-8"))
    if meta.get("order") != SITE_PACKAGES_ORDER:
        from pretrain.errors import PretrainError

        raise PretrainError(f"{directory.parent} holds a site-packages corpus built in path order "
                            f"by an earlier version, whose shards are stretches of the alphabet: "
                            f"delete it to rebuild in hashed order, or use another data.path "
                            f"(data.demo_corpus)")
    return meta


def ensure_demo_data(prepared_dir: Path, corpus: str = "stdlib", vocab_size: int = 4096,
                     max_bytes: int | None = None) -> Path:
    """Build (or reuse) a demo corpus's tokenizer and prepared shards at ``prepared_dir``."""
    import fcntl

    from data.shards import MANIFEST

    prepared_dir = Path(prepared_dir)
    root = prepared_dir.parent
    if corpus == "site-packages" and (root / "site-packages-corpus" / CORPUS_META).is_file():
        _site_packages_meta(root / "site-packages-corpus")
    if (prepared_dir / MANIFEST).is_file():
        return prepared_dir
    root.mkdir(parents=True, exist_ok=True)
    # Runs started side by side (`slm sweep run --jobs N`) build the data once: the first holds
    # the lock while it builds, the others wait and then find the manifest.
    with (root / ".demo-data.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (prepared_dir / MANIFEST).is_file():
            return prepared_dir
        return _build(prepared_dir, root, corpus, vocab_size, max_bytes)


def _build(prepared_dir: Path, root: Path, corpus: str, vocab_size: int,
           max_bytes: int | None) -> Path:
    import tokenizer
    from data.prepare import prepare

    log.info("building the %s demo data into %s (first run only)", corpus, root)
    if corpus == "stdlib":
        inputs = [write_corpus(root / "stdlib-corpus.jsonl")]
    else:
        inputs = write_site_packages_corpus(root / "site-packages-corpus", max_bytes)
    tokenizer_dir = root / "tokenizer"
    if not (tokenizer_dir / "tokenizer.model").is_file():
        tokenizer.train(inputs, vocab_size, tokenizer_dir, max_sentences=TOKENIZER_SENTENCES,
                        seed=0)
    prepare(inputs, tokenizer_dir, prepared_dir, val_fraction=0.05 if corpus == "stdlib" else 0.01,
            workers=max(1, min(2, os.cpu_count() or 1)), shard_tokens=1 << 20 if corpus == "stdlib"
            else 1 << 24)
    return prepared_dir


def ensure_stdlib_demo_data(prepared_dir: Path, vocab_size: int = 4096) -> Path:
    """Build (or reuse) the stdlib demo tokenizer and prepared shards at ``prepared_dir``."""
    return ensure_demo_data(prepared_dir, "stdlib", vocab_size)
