"""Synthetic prepared directories written through the real shard writer (no tokenizer needed).

Token values encode where they came from, so tests can check coverage and order exactly:
document d of a split is ``[d, d, ..., d]`` shifted into range, and `token_stream` returns the
split's whole stream for comparison.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from data.shard_writer import ShardWriter
from data.shards import FORMAT, FORMAT_VERSION, token_dtype, token_dtype_name, write_manifest


def write_synthetic(directory: Path, document_lengths: list[int], *, shard_tokens: int,
                    vocab_size: int = 1000, fingerprint: str = "synthetic", split: str = "train",
                    position_tokens: bool = True) -> Path:
    """A prepared dir whose `split` holds documents of the given lengths.

    With `position_tokens`, token t of the stream is ``t % vocab_size`` (so a sample's first
    token says where it starts); else document d is all ``d % vocab_size``.
    """
    directory.mkdir(parents=True, exist_ok=True)
    dtype_name = token_dtype_name(vocab_size)
    writer = ShardWriter(directory, split, token_dtype(dtype_name), shard_tokens)
    total = int(sum(document_lengths))
    if position_tokens:
        stream = np.arange(total, dtype=np.int64) % vocab_size
    else:
        stream = np.repeat(np.arange(len(document_lengths)) % vocab_size, document_lengths)
    writer.add(stream, np.asarray(document_lengths))
    shards = writer.finish()
    splits = {s: {"tokens": 0, "documents": 0, "shards": []} for s in ("train", "val")}
    splits[split] = {"tokens": total, "documents": len(document_lengths), "shards": shards}
    write_manifest(directory, {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "tokenizer": {"path": None, "fingerprint": fingerprint, "vocab_size": vocab_size,
                      "bos_id": 1, "eos_id": 2},
        "dtype": dtype_name, "bos": True, "eos": True, "config": {}, "splits": splits,
        "inputs": [], "skipped": {},
    })
    return directory
