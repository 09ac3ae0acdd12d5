"""StreamingTokenDataset: coverage, split across ranks/workers, resume, document ids, dtypes."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import data.dataset
from data import DataError, StreamingTokenDataset
from tests.data.synthetic import write_synthetic

VOCAB = 65536  # position-valued tokens stay exact: token == stream position
SEQ_LEN = 8


@pytest.fixture(scope="module")
def stream_dir(tmp_path_factory):
    """1,000 tokens in 7 shards of 150 (last 100), documents of varied lengths."""
    lengths = [3, 17, 40, 5, 9, 11, 6, 2, 3, 4] * 10
    return write_synthetic(tmp_path_factory.mktemp("stream"), lengths, shard_tokens=150,
                           vocab_size=VOCAB)


def _first_token(sample) -> int:
    return int(sample["input_ids"][0])


def _rank_worker_batches(make, world_size: int, workers: int, batches_per_rank: int,
                         monkeypatch) -> dict[int, list[list[int]]]:
    """Per global micro-batch k, the first tokens of its samples, gathered as DataLoader would:
    rank r's batch j comes from worker j % workers; worker iterators emulate get_worker_info."""
    gathered = {}
    for rank in range(world_size):
        iterators = []
        for worker in range(workers):
            info = SimpleNamespace(id=worker, num_workers=workers)
            monkeypatch.setattr(data.dataset, "get_worker_info", lambda info=info: info)
            iterators.append(iter(make(rank, world_size)))
        # Generators run lazily: give each worker its own get_worker_info for its whole life.
        monkeypatch.setattr(data.dataset, "get_worker_info", lambda: None)
        for j in range(batches_per_rank):
            dataset_iterator = iterators[j % workers]
            batch = [_first_token(next(dataset_iterator)) for _ in range(2)]
            gathered.setdefault(rank, []).append(batch)
    return gathered


def _global_order(gathered: dict[int, list[list[int]]], world_size: int) -> list[int]:
    order = []
    for j in range(len(gathered[0])):
        for rank in range(world_size):
            order.extend(gathered[rank][j])
    return order


def test_one_epoch_covers_every_sample_slot_exactly_once(stream_dir):
    dataset = StreamingTokenDataset(stream_dir, seq_len=SEQ_LEN, seed=3)
    per_epoch = dataset.stats()["sources"][0]["samples_per_epoch"]
    shard_sizes = [150] * 6 + [100]
    expected = sorted(shard * 150 + slot * SEQ_LEN for shard, size in enumerate(shard_sizes)
                      for slot in range((size - 1) // SEQ_LEN))
    assert per_epoch == len(expected) == 6 * 18 + 12
    epoch_0 = [_first_token(dataset.sample(i)) for i in range(per_epoch)]
    epoch_1 = [_first_token(dataset.sample(per_epoch + i)) for i in range(per_epoch)]
    assert sorted(epoch_0) == expected and sorted(epoch_1) == expected
    assert epoch_0 != epoch_1  # each epoch is a new shuffle


def test_dropped_tokens_are_the_shard_tails_and_counted(stream_dir):
    stats = StreamingTokenDataset(stream_dir, seq_len=SEQ_LEN).stats()["sources"][0]
    assert stats["tokens_per_epoch"] == 1000
    assert stats["tokens_dropped_per_epoch"] == 1000 - stats["samples_per_epoch"] * SEQ_LEN


def test_samples_are_contiguous_tokens_with_shifted_labels(stream_dir):
    sample = StreamingTokenDataset(stream_dir, seq_len=SEQ_LEN, seed=1).sample(5)
    start = _first_token(sample)
    assert sample["input_ids"].dtype == torch.long
    assert sample["input_ids"].tolist() == list(range(start, start + SEQ_LEN))
    assert sample["labels"].tolist() == list(range(start + 1, start + SEQ_LEN + 1))


def test_two_ranks_three_workers_take_disjoint_complete_slices(stream_dir, monkeypatch):
    def make(rank, world_size):
        return StreamingTokenDataset(stream_dir, seq_len=SEQ_LEN, micro_batch_size=2, seed=7,
                                     rank=rank, world_size=world_size)

    per_epoch = make(0, 1).stats()["sources"][0]["samples_per_epoch"]
    batches_per_rank = per_epoch // 4 + 1  # a little past one epoch
    order = _global_order(_rank_worker_batches(make, 2, 3, batches_per_rank, monkeypatch), 2)
    reference = make(0, 1)
    assert order == [_first_token(reference.sample(i)) for i in range(len(order))]
    assert sorted(order[:per_epoch]) == sorted(set(order[:per_epoch]))  # none twice in an epoch


def test_real_dataloader_workers_yield_the_rank_micro_batches_in_order(stream_dir):
    dataset = StreamingTokenDataset(stream_dir, seq_len=SEQ_LEN, micro_batch_size=2, seed=7,
                                    rank=1, world_size=2)
    loader = DataLoader(dataset, batch_size=2, num_workers=2)
    reference = StreamingTokenDataset(stream_dir, seq_len=SEQ_LEN, seed=7)
    for j, batch in zip(range(5), loader):
        k = j * 2 + 1
        expected = torch.stack([reference.sample(i)["input_ids"] for i in (2 * k, 2 * k + 1)])
        assert torch.equal(batch["input_ids"], expected)


@pytest.mark.parametrize("world_size, workers", [(2, 3), (1, 2), (4, 1)])
def test_resume_continues_with_the_sample_that_would_have_come(stream_dir, monkeypatch,
                                                              world_size, workers):
    straight = StreamingTokenDataset(stream_dir, seq_len=SEQ_LEN, seed=11)
    start_sample = 40  # mid-epoch; a multiple of every world_size × 2 here

    def make(rank, size):
        return StreamingTokenDataset(stream_dir, seq_len=SEQ_LEN, micro_batch_size=2, seed=11,
                                     rank=rank, world_size=size, start_sample=start_sample)

    resumed = _global_order(_rank_worker_batches(make, world_size, workers, 6, monkeypatch),
                            world_size)
    assert resumed == [_first_token(straight.sample(start_sample + i))
                       for i in range(len(resumed))]


def test_state_dict_counts_consumed_micro_batches_in_process(stream_dir):
    dataset = StreamingTokenDataset(stream_dir, seq_len=SEQ_LEN, micro_batch_size=2, seed=5,
                                    rank=0, world_size=2)
    loader = DataLoader(dataset, batch_size=2, num_workers=0)
    batches = iter(loader)
    for _ in range(3):
        next(batches)
    state = dataset.state_dict()
    assert state == {"sample_index": 3 * 2 * 2}
    next_batch = next(batches)["input_ids"]
    fresh = StreamingTokenDataset(stream_dir, seq_len=SEQ_LEN, micro_batch_size=2, seed=5,
                                  rank=0, world_size=2)
    fresh.load_state_dict(state)
    assert torch.equal(next(iter(DataLoader(fresh, batch_size=2)))["input_ids"], next_batch)


def test_start_sample_off_the_micro_step_grid_is_refused(stream_dir):
    with pytest.raises(DataError, match="multiple of world_size"):
        StreamingTokenDataset(stream_dir, seq_len=SEQ_LEN, micro_batch_size=2, world_size=2,
                              start_sample=6)


def test_order_depends_on_the_seed(stream_dir):
    def firsts(seed):
        dataset = StreamingTokenDataset(stream_dir, seq_len=SEQ_LEN, seed=seed)
        return [_first_token(dataset.sample(i)) for i in range(20)]

    assert firsts(1) == firsts(1) and firsts(1) != firsts(2)


def test_validation_stream_is_one_sequential_epoch_without_partial_micro_steps(tmp_path):
    directory = write_synthetic(tmp_path / "val", [50] * 5, shard_tokens=100, vocab_size=VOCAB,
                                split="val")
    dataset = StreamingTokenDataset(directory, "val", seq_len=SEQ_LEN, micro_batch_size=2,
                                    rank=1, world_size=2)
    samples = list(dataset)
    per_epoch = 12 + 12 + 6  # shards of 100, 100, 50 tokens
    assert len(samples) == len(dataset) == per_epoch // 4 * 2 == 14  # 2 tail samples dropped
    assert [_first_token(s) for s in samples[:4]] == [16, 24, 48, 56]


def test_a_train_split_read_in_order_is_one_pass_and_a_shuffled_one_endless(tmp_path):
    directory = write_synthetic(tmp_path / "train", [50] * 5, shard_tokens=100, vocab_size=VOCAB)
    in_order = StreamingTokenDataset(directory, seq_len=SEQ_LEN, shuffle=False)
    samples = list(in_order)
    assert len(samples) == len(in_order) == 12 + 12 + 6  # every slot once, in place order
    assert [_first_token(s) for s in samples[:3]] == [0, 8, 16]
    with pytest.raises(TypeError, match="endless"):
        len(StreamingTokenDataset(directory, seq_len=SEQ_LEN))


def test_document_ids_number_the_documents_within_a_sample(tmp_path):
    lengths = [3, 5, 2, 9, 4, 7, 1, 6]
    directory = write_synthetic(tmp_path / "docs", lengths * 4, shard_tokens=40,
                                vocab_size=VOCAB)
    dataset = StreamingTokenDataset(directory, seq_len=SEQ_LEN, seed=2, document_ids=True)
    document_of_position = np.repeat(np.arange(len(lengths) * 4), lengths * 4)
    for i in range(dataset.stats()["sources"][0]["samples_per_epoch"]):
        sample = dataset.sample(i)
        owners = document_of_position[sample["input_ids"].numpy()]
        assert sample["document_ids"].tolist() == (owners - owners[0]).tolist()


def test_large_vocabularies_are_stored_as_uint32(tmp_path):
    directory = write_synthetic(tmp_path / "wide", [100], shard_tokens=100, vocab_size=70_000,
                                position_tokens=False)
    (shard,) = (directory / "train-00000.bin",)
    assert shard.stat().st_size == 100 * 4
    narrow = write_synthetic(tmp_path / "narrow", [100], shard_tokens=100, vocab_size=65_536)
    assert (narrow / "train-00000.bin").stat().st_size == 100 * 2


def test_token_ids_above_uint16_round_trip(tmp_path):
    directory = write_synthetic(tmp_path / "wide", [30] * 3, shard_tokens=100, vocab_size=70_000)
    sample = StreamingTokenDataset(directory, seq_len=SEQ_LEN, shuffle=False).sample(0)
    assert sample["input_ids"].tolist() == list(range(SEQ_LEN))
    big = write_synthetic(tmp_path / "big", [70_000], shard_tokens=70_000, vocab_size=70_001)
    last = StreamingTokenDataset(big, seq_len=SEQ_LEN, shuffle=False).sample(8748)
    assert last["labels"].tolist()[-1] == 8749 * SEQ_LEN > 65_535


def test_a_missing_split_is_a_data_error(stream_dir):
    with pytest.raises(DataError, match="split 'val' holds no tokens"):
        StreamingTokenDataset(stream_dir, "val", seq_len=SEQ_LEN)


def test_a_sequence_longer_than_every_shard_is_a_data_error(stream_dir):
    with pytest.raises(DataError, match="no shard holds 201 tokens"):
        StreamingTokenDataset(stream_dir, seq_len=200)


def test_a_token_id_at_or_above_the_vocabulary_names_its_shard_and_offset(tmp_path):
    directory = write_synthetic(tmp_path / "corrupt", [40] * 5, shard_tokens=100, vocab_size=1000)
    shard = directory / "train-00001.bin"
    tokens = np.fromfile(shard, dtype="<u2")
    tokens[37] = 1000  # the first id past the vocabulary
    tokens.tofile(shard)
    dataset = StreamingTokenDataset(directory, seq_len=SEQ_LEN, shuffle=False)
    with pytest.raises(DataError) as caught:
        list(dataset)
    message = str(caught.value)
    assert "token id 1000 at token offset 37" in message
    assert message.endswith(f"({shard}, token offset 37)")
