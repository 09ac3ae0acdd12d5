"""Mixing prepared datasets by weight: proportions, O(1) positions, per-source epochs."""

from __future__ import annotations

import time

import numpy as np
import pytest

from data import DataError, StreamingTokenDataset
from data.mixing import MixtureIndex, apportion
from tests.data.synthetic import write_synthetic

TINYLLAMA_WEIGHTS = (0.6936, 0.3064)  # SlimPajama : StarCoder


def test_realised_proportions_are_within_one_percent_over_10k_samples():
    mixture = MixtureIndex(TINYLLAMA_WEIGHTS, seed=0)
    sources = np.array([mixture.locate(i)[0] for i in range(10_000)])
    shares = np.bincount(sources, minlength=2) / len(sources)
    assert abs(shares - np.array(TINYLLAMA_WEIGHTS)).max() < 0.01


def test_each_source_takes_its_own_samples_in_order_without_gaps():
    mixture = MixtureIndex((0.5, 0.3, 0.2), seed=4, block_samples=100)
    seen = {0: [], 1: [], 2: []}
    for i in range(2_345):
        source, local = mixture.locate(i)
        seen[source].append(local)
    for source, locals_ in seen.items():
        assert locals_ == list(range(len(locals_)))
    assert [len(v) for v in seen.values()] == mixture.samples_per_source(2_345).tolist()


def test_positions_far_along_the_stream_need_no_iteration():
    mixture = MixtureIndex(TINYLLAMA_WEIGHTS, seed=0)
    began = time.perf_counter()
    source, local = mixture.locate(1_464_843_750_000)  # ~3T tokens of 2048-token samples
    assert time.perf_counter() - began < 0.05
    counts = mixture.samples_per_source(1_464_843_750_001) - mixture.samples_per_source(
        1_464_843_750_000)
    assert counts.tolist() == [int(source == 0), int(source == 1)]


def test_sources_are_interleaved_within_a_block():
    mixture = MixtureIndex((0.5, 0.5), seed=1, block_samples=1000)
    first_hundred = [mixture.locate(i)[0] for i in range(100)]
    assert 30 < sum(first_hundred) < 70  # not 500 of one source then 500 of the other


def test_apportion_rounds_by_largest_remainder():
    assert apportion(TINYLLAMA_WEIGHTS, 1000).tolist() == [694, 306]
    assert apportion((1, 1, 1), 10).tolist() == [4, 3, 3]


@pytest.mark.parametrize("weights", [(1.0, 0.0), (1.0, -2.0), (1.0, float("nan")), ()])
def test_non_positive_weights_are_refused(weights):
    with pytest.raises(DataError, match="weights must be positive"):
        MixtureIndex(weights)


def test_the_small_source_repeats_and_its_epochs_are_counted(tmp_path):
    large = write_synthetic(tmp_path / "large", [1000], shard_tokens=1000, vocab_size=2000)
    small = write_synthetic(tmp_path / "small", [90], shard_tokens=90, vocab_size=2000,
                            position_tokens=False)
    dataset = StreamingTokenDataset([(large, 0.7), (small, 0.3)], seq_len=8, seed=0,
                                    mix_block_samples=100, start_sample=200)
    stats = dataset.stats()["sources"]
    assert [s["samples_per_epoch"] for s in stats] == [124, 11]
    assert [s["samples_consumed"] for s in stats] == [140, 60]
    assert [s["epoch"] for s in stats] == [1, 5]
    from_small = [i for i in range(200) if dataset.locate(i)[0] == 1]
    firsts = [int(dataset.sample(i)["input_ids"][0]) for i in from_small[:11]]
    assert sorted(firsts) == [0] * 11  # all of the small source's one document ...
    offsets = sorted(dataset.locate(i)[2] for i in from_small[:11])
    assert offsets == [8 * slot for slot in range(11)]  # ... each slot once in its first epoch


def test_datasets_from_different_tokenizers_are_not_mixed(tmp_path):
    a = write_synthetic(tmp_path / "a", [100], shard_tokens=100, fingerprint="aaa")
    b = write_synthetic(tmp_path / "b", [100], shard_tokens=100, fingerprint="bbb")
    with pytest.raises(DataError, match="different tokenizers"):
        StreamingTokenDataset([(a, 1), (b, 1)], seq_len=8)
