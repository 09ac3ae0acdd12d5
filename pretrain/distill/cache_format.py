"""The on-disk format of a teacher cache (`slm distill cache`), in one place.

A teacher cache holds, for one split of one prepared data directory, the teacher's top-K
next-token log-probabilities (natural log, temperature 1, sorted descending) and their ids for
every token that is a training input::

    {split}-{n:05d}.logprobs   little-endian float16 [rows, K]
    {split}-{n:05d}.ids        little-endian uint16 (teacher vocabulary ≤ 65,536) or uint32 [rows, K]
    manifest.json              written last (its presence marks a complete cache)
    cache-progress.json        the settings of an unfinished cache (removed when complete)

Row r of output shard n is token r of token shard n. Contexts: `data.index` cuts a shard into
sample slots of `seq_len` inputs starting at multiples of `seq_len`, whatever the seed, shuffle
or world size; every training sample is one slot. So the teacher reads each slot as one
sequence (with the same document ids when training masks attention by document) and its
prediction at row r sees exactly the context the student sees there. The `rows` of a shard are
its slots × seq_len; the tokens after the last slot are never inputs and have no row. The cache
is therefore tied to `seq_len` and `document_masking`, recorded in the manifest.

Bytes per token: K × (2 + 2) with uint16 ids (K = 64: 256 B, i.e. 64× the uint16 token itself).

`manifest.json` keys: format, format_version, split, seq_len, top_k, document_masking,
logprob_dtype, id_dtype, compute_dtype, batch_size, data {path, fingerprint, tokenizer_fingerprint},
teacher {path, fingerprint, vocab_size}, bytes_per_token, shards [{token_file, rows,
logprobs_file, ids_file, logprobs_sha256, ids_sha256}].
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from data.shards import token_dtype, token_dtype_name
from pretrain.errors import PretrainError

FORMAT = "slm-teacher-topk"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
PROGRESS = "cache-progress.json"
LOGPROB_DTYPE = np.dtype("<f2")

# Token ids are stored as the shards store them (uint16 up to 65,536 ids, else uint32).
id_dtype_name, id_dtype = token_dtype_name, token_dtype


def logprobs_file(split: str, number: int) -> str:
    return f"{split}-{number:05d}.logprobs"


def ids_file(split: str, number: int) -> str:
    return f"{split}-{number:05d}.ids"


def shard_rows(tokens: int, seq_len: int) -> int:
    """Cached rows of a token shard of `tokens` tokens: its sample slots × seq_len (data.index)."""
    return max((tokens - 1) // seq_len, 0) * seq_len


def data_fingerprint(manifest: dict, split: str) -> str:
    """sha256 hex over the split's shard names, token counts and sha256s and the tokenizer
    fingerprint (all from the token manifest): the token shards a cache belongs to."""
    shards = manifest["splits"].get(split, {}).get("shards", [])
    facts = {"tokenizer": manifest["tokenizer"]["fingerprint"], "dtype": manifest["dtype"],
             "shards": [[s["file"], s["tokens"], s["sha256"]] for s in shards]}
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()


def read_cache_manifest(directory: str | Path) -> dict:
    """The manifest of a complete cache; `PretrainError` if missing, incomplete or foreign."""
    directory = Path(directory)
    path = directory / MANIFEST
    if not directory.is_dir():
        raise PretrainError(f"teacher cache not found ({directory})")
    if not path.is_file():
        hint = ("an unfinished `slm distill cache`: rerun it to finish"
                if (directory / PROGRESS).is_file() else "make one with `slm distill cache`")
        raise PretrainError(f"not a complete teacher cache, no {MANIFEST}: {hint} ({directory})")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise PretrainError(f"corrupt teacher cache manifest: {e} ({path})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise PretrainError(f"not a teacher cache manifest ({path})")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise PretrainError(f"teacher cache format version {manifest.get('format_version')} is "
                            f"not supported (this code reads {FORMAT_VERSION}) ({path})")
    return manifest
