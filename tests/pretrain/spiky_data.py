"""A prepared data directory whose training samples of some steps are garbage: a copy of the
`pretrain_data` fixture with those samples' tokens replaced by random ids (in the vocabulary,
with the manifest's checksums updated: valid data that a trained model finds very surprising)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from tests.fixtures.pretrain import TINY_VOCAB

GARBAGE_TOKEN = TINY_VOCAB - 1  # a rare id, repeated: a trained model finds it very unlikely


def garbage_at_steps(data_dir: Path, out: Path, steps: range, *, seed: int, seq_len: int,
                     samples_per_step: int) -> Path:
    """Copy ``data_dir`` to ``out`` and fill the training samples of ``steps`` (1-based optimizer
    steps of a run with this data seed, sequence length and G samples per step) with garbage."""
    from data import StreamingTokenDataset
    from data.shards import read_manifest, sha256_file, split_shards, token_dtype, write_manifest

    shutil.copytree(data_dir, out)
    dataset = StreamingTokenDataset(out, "train", seq_len=seq_len, seed=seed)
    manifest = read_manifest(out)
    shards = split_shards(manifest, "train", out)
    touched = set()
    for step in steps:
        for sample in range((step - 1) * samples_per_step, step * samples_per_step):
            _, shard, offset = dataset.locate(sample)
            tokens = np.memmap(out / shards[shard]["file"], dtype=token_dtype(manifest["dtype"]), mode="r+")
            tokens[offset:offset + seq_len + 1] = GARBAGE_TOKEN
            tokens.flush()
            touched.add(shard)
    for shard in touched:
        shards[shard]["sha256"] = sha256_file(out / shards[shard]["file"])
    write_manifest(out, manifest)
    return out
