"""Reading a teacher cache in training: per-sample top-K targets, checked against the data.

The training data module attaches targets to every sample through the dataset's `transform`
hook, so they follow the sample wherever the deterministic order sends it (any world size,
worker count, exact resume)::

    targets = open_teacher_targets(cache_dir, data_dir, seq_len=T, document_masking=False,
                                   top_k=None, student_vocab_size=V)
    dataset = StreamingTokenDataset(data_dir, "train", seq_len=T, ..., transform=targets)
    # each sample now also holds teacher_logprobs float16 [T, k] and teacher_ids int32 [T, k]

Sample (source, shard, offset) reads rows [offset, offset + T) of the cache's shard: the
teacher's predictions for the sample's T inputs, made with the sample's own context
(`cache_format`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from pretrain.distill import cache_format as fmt
from pretrain.errors import PretrainError


class TeacherCache:
    """One complete cache directory, checked against the token shards it is used with.

    Args: `directory` (the cache), `data_dir` (the prepared shards training reads), `seq_len`
    and `document_masking` of training, `split`, `top_k` (use the first top_k of the cached K;
    default all), `student_vocab_size` (the student's output width; must cover the ids).
    Raises `PretrainError` naming the cache for a missing, unfinished or foreign cache, other
    token shards, another seq_len or masking, top_k > K, a student vocabulary too small, or a
    missing or short file.
    """

    def __init__(self, directory: str | os.PathLike, data_dir: str | os.PathLike, *,
                 seq_len: int, document_masking: bool = False, split: str = "train",
                 top_k: int | None = None, student_vocab_size: int | None = None):
        from data import DataError
        from data.shards import read_manifest

        self.directory = Path(directory)
        self.manifest = manifest = fmt.read_cache_manifest(self.directory)
        where = f"{self.directory}; distill.cache"
        try:
            data_manifest = read_manifest(data_dir)
        except DataError as e:
            raise PretrainError(str(e)) from None
        if manifest["split"] != split:
            raise PretrainError(f"teacher cache holds split {manifest['split']!r}, training "
                                f"reads {split!r} ({where})")
        if manifest["data"]["fingerprint"] != fmt.data_fingerprint(data_manifest, split):
            raise PretrainError(f"teacher cache was made from other token shards than {data_dir} "
                                f"(data fingerprint differs) ({where})")
        if manifest["seq_len"] != seq_len:
            raise PretrainError(f"teacher cache holds contexts of seq_len {manifest['seq_len']}, "
                                f"training uses {seq_len} ({where})")
        if manifest["document_masking"] != bool(document_masking):
            state = "with" if manifest["document_masking"] else "without"
            raise PretrainError(f"teacher cache was made {state} document masking, training "
                                f"{'uses' if document_masking else 'does not use'} it ({where})")
        self.k = manifest["top_k"] if top_k is None else int(top_k)
        if not 1 <= self.k <= manifest["top_k"]:
            raise PretrainError(f"top_k {top_k} is outside the cache's 1..{manifest['top_k']} "
                                f"({self.directory}; distill.top_k)")
        teacher_vocab = manifest["teacher"]["vocab_size"]
        if student_vocab_size is not None and student_vocab_size < teacher_vocab:
            raise PretrainError(f"the cache's teacher predicts {teacher_vocab} ids, the student "
                                f"only {student_vocab_size} ({where})")
        self.seq_len = seq_len
        self.id_dtype = fmt.id_dtype(manifest["id_dtype"])
        for shard in manifest["shards"]:
            for key, itemsize in (("logprobs_file", fmt.LOGPROB_DTYPE.itemsize),
                                  ("ids_file", self.id_dtype.itemsize)):
                path = self.directory / shard[key]
                expected = shard["rows"] * manifest["top_k"] * itemsize
                if not path.is_file() or path.stat().st_size != expected:
                    raise PretrainError(f"teacher cache file missing or not {expected} bytes "
                                        f"({path})")
        self._open: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def __getstate__(self):  # memmaps stay in the process that opened them
        return {**self.__dict__, "_open": {}}

    def _arrays(self, shard: int) -> tuple[np.ndarray, np.ndarray]:
        if shard not in self._open:
            entry, k = self.manifest["shards"][shard], self.manifest["top_k"]
            shape = (entry["rows"], k)
            self._open[shard] = tuple(
                np.memmap(self.directory / entry[key], dtype=dtype, mode="r",
                          shape=shape).view(np.ndarray)
                for key, dtype in (("logprobs_file", fmt.LOGPROB_DTYPE),
                                   ("ids_file", self.id_dtype)))
        return self._open[shard]

    def targets(self, shard: int, offset: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(log-probabilities float16 [seq_len, k], ids int32 [seq_len, k]) of the sample that
        starts at token `offset` of token shard `shard` (a `StreamingTokenDataset.locate`)."""
        logprobs, ids = self._arrays(shard)
        if offset % self.seq_len or offset + self.seq_len > len(logprobs):
            raise ValueError(f"no cached sample at shard {shard}, offset {offset}")
        rows = slice(offset, offset + self.seq_len)
        return (torch.from_numpy(np.array(logprobs[rows, :self.k])),
                torch.from_numpy(ids[rows, :self.k].astype(np.int32)))


class TeacherTargets:
    """The dataset transform: adds ``teacher_logprobs`` and ``teacher_ids`` to each sample from
    the cache of its source (one cache per data source, in the dataset's source order)."""

    def __init__(self, caches: list[TeacherCache]):
        self.caches = list(caches)

    @property
    def k(self) -> int:
        return self.caches[0].k

    def __call__(self, location: tuple[int, int, int], sample: dict) -> dict:
        source, shard, offset = location
        logprobs, ids = self.caches[source].targets(shard, offset)
        return {**sample, "teacher_logprobs": logprobs, "teacher_ids": ids}


def open_teacher_targets(cache_dirs: str | os.PathLike | list, data_dirs: str | os.PathLike | list,
                         *, seq_len: int, document_masking: bool = False,
                         top_k: int | None = None, student_vocab_size: int | None = None,
                         split: str = "train") -> TeacherTargets:
    """A `TeacherTargets` for a dataset over `data_dirs` (one directory or the list of mixed
    sources), from one cache per source, each checked (`TeacherCache`); `PretrainError` when
    the counts differ or a cache does not match its source."""
    caches = [cache_dirs] if isinstance(cache_dirs, (str, os.PathLike)) else list(cache_dirs)
    sources = [data_dirs] if isinstance(data_dirs, (str, os.PathLike)) else list(data_dirs)
    if len(caches) != len(sources):
        raise PretrainError(f"{len(sources)} data sources need as many teacher caches, got "
                            f"{len(caches)} (distill.cache)")
    opened = [TeacherCache(c, d, seq_len=seq_len, document_masking=document_masking,
                           split=split, top_k=top_k, student_vocab_size=student_vocab_size)
              for c, d in zip(caches, sources)]
    if len({c.k for c in opened}) > 1:
        raise PretrainError("the teacher caches of the sources hold different K; set "
                            "distill.top_k to at most the smallest (distill.top_k)")
    return TeacherTargets(opened)
