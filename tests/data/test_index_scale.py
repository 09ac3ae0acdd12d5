"""The sample index stays small and fast at TinyLlama scale (3T tokens): O(shards) memory."""

from __future__ import annotations

import time
import tracemalloc

import numpy as np

from data.index import SplitIndex
from data.shards import FORMAT, FORMAT_VERSION, read_manifest, write_manifest

THREE_TRILLION = 3_000_000_000_000


def _build_and_locate(shard_tokens):
    """(index, located samples, CPU seconds, peak traced bytes) of building and using an index.

    CPU time, not wall time: the machine running the tests may be shared."""

    def build():
        index = SplitIndex(shard_tokens, seq_len=2048, seed=0)
        return index, [index.locate(i) for i in (0, 10**9, index.samples_per_epoch - 1,
                                                 index.samples_per_epoch + 5)]

    began = time.process_time()
    build()
    seconds = time.process_time() - began
    tracemalloc.start()
    index, located = build()
    peak_bytes = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return index, located, seconds, peak_bytes


def test_a_3t_token_manifest_indexes_in_under_a_second_and_100_mb(tmp_path):
    shard_tokens = 1 << 27  # the prepare default: 256 MiB uint16 shards
    count, last = divmod(THREE_TRILLION, shard_tokens)
    shards = [{"file": f"train-{n:05d}.bin", "index_file": f"train-{n:05d}.idx",
               "tokens": shard_tokens, "documents": 60_000, "sha256": "0" * 64,
               "index_sha256": "0" * 64} for n in range(count)]
    shards.append({**shards[-1], "tokens": last})
    write_manifest(tmp_path, {
        "format": FORMAT, "format_version": FORMAT_VERSION, "dtype": "uint16", "bos": True,
        "eos": True, "config": {}, "inputs": [], "skipped": {},
        "tokenizer": {"path": None, "fingerprint": "f", "vocab_size": 32000, "bos_id": 1,
                      "eos_id": 2},
        "splits": {"train": {"tokens": THREE_TRILLION, "documents": 0, "shards": shards}}})
    manifest = read_manifest(tmp_path)
    index, located, seconds, peak_bytes = _build_and_locate(
        [s["tokens"] for s in manifest["splits"]["train"]["shards"]])
    assert index.tokens_per_epoch == THREE_TRILLION
    assert seconds < 1.0 and peak_bytes < 100 * 2**20, (seconds, peak_bytes)
    assert all(0 <= offset < shard_tokens for _, offset in located)


def test_small_shards_of_3t_tokens_still_index_in_under_a_second_and_100_mb():
    shard_tokens = np.full(THREE_TRILLION // (1 << 21), 1 << 21, dtype=np.int64)  # 1.43M shards
    index, located, seconds, peak_bytes = _build_and_locate(shard_tokens)
    assert index.samples_per_epoch == len(shard_tokens) * 1023
    assert seconds < 1.0 and peak_bytes < 100 * 2**20, (seconds, peak_bytes)
