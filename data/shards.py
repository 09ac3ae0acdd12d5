"""The on-disk format of prepared token data: shard files and `manifest.json` (one place).

A prepared directory holds, for each split (``train``, ``val``):

- ``{split}-{n:05d}.bin``: raw little-endian token ids, ``uint16`` when the vocabulary has at
  most 65,536 ids, else ``uint32``. Every shard of a split holds exactly ``shard_tokens``
  tokens except the split's last one, which may hold fewer. The split's token stream is its
  shards concatenated in order; documents are packed back to back (``[BOS] ids EOS`` each,
  BOS per the recorded policy) and may continue from one shard into the next.
- ``{split}-{n:05d}.idx``: little-endian ``int64`` offsets, within the shard, of the first
  token of every document that STARTS in that shard, ascending. A document continued from the
  previous shard has no entry (it owns offsets ``[0, first entry)``). With these, the document
  of any token is one ``searchsorted`` away, which is what document-masked attention needs.
- ``manifest.json``, written last (its presence marks a complete directory)::

    format, format_version         "slm-token-shards", 1
    tokenizer                      {path, fingerprint, vocab_size, bos_id, eos_id}
    dtype                          "uint16" | "uint32"
    bos, eos                       whether each document starts with BOS / ends with EOS
    config                         what the output depends on (inputs, text key, split, ...)
    splits.{train,val}             {tokens, documents, shards: [{file, index_file, tokens,
                                    documents, sha256, index_sha256}]}
    inputs                         [{path, bytes, documents, tokens, val_documents, skipped}]
    skipped                        {reason: count} over all inputs

Every file is written under a temporary name and renamed when complete (`tokenizer.atomic`;
the shard being filled is appended to as ``.bin.partial``, see `data.shard_writer`). The
manifest holds no timestamps or host facts, so it is byte-identical for identical inputs and
settings.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from data import DataError
from tokenizer.atomic import write_atomic

FORMAT = "slm-token-shards"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SPLITS = ("train", "val")
DOCUMENT_INDEX_DTYPE = np.dtype("<i8")
_DTYPES = {"uint16": np.dtype("<u2"), "uint32": np.dtype("<u4")}
_UINT16_VOCAB_LIMIT = 1 << 16


def token_dtype_name(vocab_size: int) -> str:
    """``"uint16"`` when every id of a `vocab_size` vocabulary fits in 16 bits, else ``"uint32"``."""
    return "uint16" if vocab_size <= _UINT16_VOCAB_LIMIT else "uint32"


def token_dtype(name: str) -> np.dtype:
    """The little-endian numpy dtype for a manifest ``dtype`` name."""
    return _DTYPES[name]


def shard_file(split: str, number: int) -> str:
    return f"{split}-{number:05d}.bin"


def index_file(split: str, number: int) -> str:
    return f"{split}-{number:05d}.idx"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def json_bytes(value) -> bytes:
    """Canonical JSON (sorted keys, fixed indent): equal values give equal bytes."""
    return (json.dumps(value, indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode()


def write_manifest(directory: Path, manifest: dict) -> Path:
    """Write `manifest` as ``directory/manifest.json`` atomically; this marks completion."""
    path = Path(directory) / MANIFEST
    return write_atomic(path, json_bytes(manifest))


def read_manifest(directory: str | Path) -> dict:
    """Read and check ``directory/manifest.json``; DataError if missing, foreign or corrupt."""
    directory = Path(directory)
    path = directory / MANIFEST
    if not directory.is_dir():
        raise DataError(f"no such prepared data directory ({directory})")
    if not path.is_file():
        hint = (" - an interrupted `slm data prepare`? rerun it to resume"
                if any(directory.glob("*.partial")) or (directory / "prepare-progress.json").exists()
                else "; make one with `slm data prepare`")
        raise DataError(f"not a prepared data directory: no {MANIFEST}{hint} ({directory})")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"corrupt manifest: {e} ({path})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise DataError(f"not an slm token-shard manifest ({path})")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise DataError(f"manifest format version {manifest.get('format_version')} is not "
                        f"supported (this code reads {FORMAT_VERSION}) ({path})")
    for key in ("tokenizer", "dtype", "bos", "eos", "splits", "inputs", "config"):
        if key not in manifest:
            raise DataError(f"manifest lacks key '{key}' ({path})")
    if manifest["dtype"] not in _DTYPES:
        raise DataError(f"manifest dtype '{manifest['dtype']}' is not uint16/uint32 ({path})")
    return manifest


def split_shards(manifest: dict, split: str, where: str | Path) -> list[dict]:
    """The shard entries of `split`; DataError if the split is unknown or holds no tokens."""
    if split not in SPLITS:
        raise DataError(f"unknown split '{split}', expected one of {', '.join(SPLITS)} ({where})")
    entry = manifest["splits"].get(split)
    if not entry or not entry["tokens"]:
        raise DataError(f"split '{split}' holds no tokens ({where}); for a validation split "
                        f"prepare with --val-fraction or --val-docs")
    return entry["shards"]


def open_tokens(directory: Path, shard: dict, dtype: np.dtype) -> np.ndarray:
    """The shard's tokens, memory-mapped read-only; DataError if the file is missing or short."""
    path = Path(directory) / shard["file"]
    expected_bytes = shard["tokens"] * dtype.itemsize
    try:
        actual_bytes = path.stat().st_size
    except FileNotFoundError:
        raise DataError(f"shard file missing ({path})") from None
    if actual_bytes != expected_bytes:
        raise DataError(f"shard file holds {actual_bytes} bytes, the manifest says "
                        f"{expected_bytes} ({path})")
    # A plain ndarray view of the map: slicing a np.memmap subclass costs ~5 µs per sample.
    return np.memmap(path, dtype=dtype, mode="r", shape=(shard["tokens"],)).view(np.ndarray)


def read_document_starts(directory: Path, shard: dict) -> np.ndarray:
    """The shard's document start offsets (int64, ascending); DataError if missing or short."""
    path = Path(directory) / shard["index_file"]
    try:
        starts = np.fromfile(path, dtype=DOCUMENT_INDEX_DTYPE)
    except FileNotFoundError:
        raise DataError(f"document index file missing ({path})") from None
    if len(starts) != shard["documents"]:
        raise DataError(f"document index holds {len(starts)} entries, the manifest says "
                        f"{shard['documents']} ({path})")
    return starts


def verify_checksums(directory: str | Path, manifest: dict) -> list[str]:
    """Re-hash every shard and index file; returns one problem line per bad file (empty: ok)."""
    directory = Path(directory)
    problems = []
    for split in SPLITS:
        for shard in manifest["splits"].get(split, {}).get("shards", []):
            for name, digest in ((shard["file"], shard["sha256"]),
                                 (shard["index_file"], shard["index_sha256"])):
                path = directory / name
                if not path.is_file():
                    problems.append(f"missing ({path})")
                elif sha256_file(path) != digest:
                    problems.append(f"sha256 mismatch ({path})")
    return problems


def check_checksums(directory: str | Path, manifest: dict) -> int:
    """Re-hash every shard and index file (`verify_checksums`); DataError naming the first bad
    file (`slm data inspect --verify`, `slm pretrain --verify-data`). Returns the files checked."""
    problems = verify_checksums(directory, manifest)
    if problems:
        raise DataError(f"{len(problems)} file(s) fail verification against {MANIFEST}, first: {problems[0]}")
    return 2 * sum(len(entry.get("shards", [])) for entry in manifest["splits"].values())
