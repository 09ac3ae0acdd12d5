"""Where sample i of a split lives: (shard, first token), in O(shards) memory.

Samples. A shard of n tokens holds ``(n - 1) // seq_len`` sample slots; slot j is the
``seq_len + 1`` tokens ``[j·seq_len, j·seq_len + seq_len + 1)`` (inputs and shifted targets
overlap by one token, so consecutive slots tile the shard). Samples never span shards: the
``n - slots·seq_len`` tokens at a shard's end are never an input and are counted in
`tokens_dropped_per_epoch` (below one sample per shard: 0.0015% for 134M-token shards at
seq_len 2048). Documents are packed across sample boundaries, as TinyLlama does.

Order. Global sample index g (over all epochs) falls in epoch ``g // samples_per_epoch``.
Each epoch permutes the shards with a generator seeded by (seed, epoch), cuts that order into
windows of `window_shards` consecutive shards, and visits the windows in order; within a
window, the sample slots of all its shards are permuted by a generator seeded by
(seed, epoch, window). So a position is a pure function of (seed, epoch, sample index); memory
is O(shards) for the epoch plus O(samples in one window) transiently, and every slot comes
exactly once per epoch. Mixing a window of shards, not one, keeps consecutive batches from
drawing on a single shard (one stretch of the corpus).
"""

from __future__ import annotations

import bisect
from typing import Sequence

import numpy as np

from data import DataError


class SplitIndex:
    """Maps global sample indices of one split to ``(shard number, first token offset)``.

    `shard_tokens`: token count of every shard (e.g. from the manifest). `shuffle=False`
    keeps shard and slot order (validation: sequential reads, same samples every time).
    Raises DataError if no shard holds a full sample.
    """

    def __init__(self, shard_tokens: Sequence[int] | np.ndarray, seq_len: int, seed: int = 0,
                 shuffle: bool = True, window_shards: int = 4, where: str = "dataset"):
        if seq_len < 1 or window_shards < 1:
            raise DataError(f"seq_len and window_shards must be positive ({where})")
        self.seq_len, self.seed, self.shuffle = int(seq_len), int(seed), bool(shuffle)
        self.window_shards = int(window_shards)
        tokens = np.asarray(shard_tokens, dtype=np.int64)
        self.shard_samples = np.maximum((tokens - 1) // self.seq_len, 0)
        self.samples_per_epoch = int(self.shard_samples.sum())
        self.tokens_per_epoch = int(tokens.sum())
        self.tokens_dropped_per_epoch = int((tokens - self.shard_samples * self.seq_len).sum())
        if self.samples_per_epoch == 0:
            raise DataError(f"no shard holds {self.seq_len + 1} tokens, the length of one sample "
                            f"at seq_len {self.seq_len} ({where})")
        self._epoch_cache: tuple | None = None
        self._window_cache: tuple | None = None

    def _epoch(self, epoch: int):
        """(shard order, start sample of each window, end sample of each window) for `epoch`."""
        if self._epoch_cache is None or self._epoch_cache[0] != epoch:
            count = len(self.shard_samples)
            order = (np.random.default_rng([self.seed, epoch]).permutation(count)
                     if self.shuffle else np.arange(count))
            window_samples = np.add.reduceat(self.shard_samples[order],
                                             np.arange(0, count, self.window_shards))
            window_ends = np.cumsum(window_samples)
            self._epoch_cache = (epoch, order, window_ends - window_samples, window_ends)
        return self._epoch_cache[1:]

    def _window(self, epoch: int, window: int, order: np.ndarray):
        """(shards of the window, their slot-count prefix sums, slot permutation or None)."""
        key = (epoch, window)
        if self._window_cache is None or self._window_cache[0] != key:
            shards = order[window * self.window_shards:(window + 1) * self.window_shards]
            ends = np.cumsum(self.shard_samples[shards])
            slots = (np.random.default_rng([self.seed, epoch, window]).permutation(int(ends[-1]))
                     if self.shuffle else None)
            # Python lists: per-sample lookups in a handful of entries are faster with bisect.
            self._window_cache = (key, shards.tolist(), ends.tolist(), slots)
        return self._window_cache[1:]

    def locate(self, sample_index: int) -> tuple[int, int]:
        """Global sample index -> (shard number, offset of its first token in that shard)."""
        epoch, position = divmod(int(sample_index), self.samples_per_epoch)
        order, window_starts, window_ends = self._epoch(epoch)
        window = int(window_ends.searchsorted(position, side="right"))
        shards, ends, slots = self._window(epoch, window, order)
        within = position - int(window_starts[window])
        if slots is not None:
            within = int(slots[within])
        member = bisect.bisect_right(ends, within)
        slot = within - (ends[member - 1] if member else 0)
        return shards[member], slot * self.seq_len
