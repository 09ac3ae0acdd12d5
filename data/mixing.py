"""Which source global sample i comes from, when several prepared datasets are mixed by weight.

The global sample stream is cut into blocks of `block_samples`. Every block holds the same
number of samples of each source: the weights apportioned to the block size by largest
remainder (so the realised share of a source differs from its weight by at most 0.5 /
block_samples, e.g. 0.05% at 1,000). Within block b the sources' slots are shuffled by a
generator seeded by (seed, b). So the source of sample i, and how many samples of that source
came before it, are pure functions of (seed, i) computed in O(sources + block) without
iterating from 0: resume is O(1), whatever the world size.

A source's own sample counter runs on past its epoch when it runs out (its next epoch is a new
shuffle); `samples_per_source(n)` gives the counters after n global samples, from which the
dataset reports per-source epochs.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from data import DataError

_MIX_SEED_TAG = 0x6D6978  # keeps block shuffles independent of the sources' own shuffles


def apportion(weights: Sequence[float], total: int) -> np.ndarray:
    """Split `total` into integer counts proportional to `weights` (largest remainder)."""
    shares = np.asarray(weights, dtype=np.float64) / float(np.sum(weights)) * total
    counts = np.floor(shares).astype(np.int64)
    # Stable order: ties go to the earlier source, so counts never depend on float noise order.
    by_remainder = np.argsort(-(shares - counts), kind="stable")
    counts[by_remainder[:total - int(counts.sum())]] += 1
    return counts


class MixtureIndex:
    """Maps a global sample index to ``(source number, sample index within that source)``."""

    def __init__(self, weights: Sequence[float], seed: int = 0, block_samples: int = 1000,
                 where: str = "dataset"):
        weights = [float(w) for w in weights]
        if not weights or any(not np.isfinite(w) or w <= 0 for w in weights):
            raise DataError(f"mixture weights must be positive numbers, got {weights} ({where})")
        self.weights = np.asarray(weights) / sum(weights)
        self.seed, self.block_samples = int(seed), int(block_samples)
        self.block_counts = apportion(self.weights, self.block_samples)
        if (self.block_counts == 0).any():
            raise DataError(f"a mixture weight is below 1/{self.block_samples} of the total; "
                            f"raise it or use a larger block ({where})")
        self._block_cache: tuple | None = None

    def _block(self, block: int):
        """(source of each slot, occurrence number of that source up to the slot) for `block`."""
        if self._block_cache is None or self._block_cache[0] != block:
            sources = np.repeat(np.arange(len(self.block_counts)), self.block_counts)
            sources = np.random.default_rng([self.seed, _MIX_SEED_TAG, block]).permutation(sources)
            by_source = np.argsort(sources, kind="stable")
            first_slot = np.concatenate(([0], np.cumsum(self.block_counts)[:-1]))
            occurrence = np.empty(self.block_samples, dtype=np.int64)
            occurrence[by_source] = np.arange(self.block_samples) - first_slot[sources[by_source]]
            self._block_cache = (block, sources, occurrence)
        return self._block_cache[1:]

    def locate(self, sample_index: int) -> tuple[int, int]:
        """Global sample index -> (source number, that source's own sample index)."""
        block, within = divmod(int(sample_index), self.block_samples)
        sources, occurrence = self._block(block)
        source = int(sources[within])
        return source, block * int(self.block_counts[source]) + int(occurrence[within])

    def samples_per_source(self, sample_count: int) -> np.ndarray:
        """How many samples of each source the first `sample_count` global samples hold."""
        block, within = divmod(int(sample_count), self.block_samples)
        counts = block * self.block_counts
        if within:
            sources, _ = self._block(block)
            counts = counts + np.bincount(sources[:within], minlength=len(self.block_counts))
        return counts
