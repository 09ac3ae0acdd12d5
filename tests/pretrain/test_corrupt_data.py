"""A corrupt shard stops `slm pretrain` with one `error:` line before the model sees it: an id
≥ vocab is caught when its sample is read (shard file and token offset named), and
`--verify-data` finds in-range damage by sha256 before any work."""

import shutil

import numpy as np
import pytest

from data import StreamingTokenDataset
from tests.fixtures.pretrain import tiny_config


def _copy_data(pretrain_data, tmp_path):
    return shutil.copytree(pretrain_data, tmp_path / "data")


def _first_sample_location(data_dir, seed=7, seq_len=32):
    """(shard file, token offset) of the first training sample `tiny_config`'s run reads."""
    dataset = StreamingTokenDataset(data_dir, "train", seq_len=seq_len, seed=seed)
    _, shard, offset = dataset.locate(0)
    return data_dir / dataset.sources[0].shards[shard]["file"], offset


def _write_token(shard, offset, value):
    tokens = np.fromfile(shard, dtype="<u2")
    tokens[offset] = value
    tokens.tofile(shard)


def _error_lines(proc):
    return [line for line in proc.stderr.splitlines() if line.startswith("error:")]


def _assert_out_of_vocab_error(proc, shard, offset):
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    [line] = _error_lines(proc)
    assert line == proc.stderr.rstrip().splitlines()[-1]
    assert f"token id 5000 at token offset {offset} is not below the vocabulary size 1024" in line
    assert line.endswith(f"({shard}, token offset {offset})")


def test_an_id_past_the_vocabulary_stops_training_with_one_line_naming_shard_and_offset(
        pretrain_data, tmp_path, slm):
    data_dir = _copy_data(pretrain_data, tmp_path)
    shard, offset = _first_sample_location(data_dir)
    _write_token(shard, offset + 5, 5000)
    proc = slm("pretrain", "--config", tiny_config(tmp_path / "run", data_dir),
               env={"OMP_NUM_THREADS": "1"})
    _assert_out_of_vocab_error(proc, shard, offset + 5)


@pytest.mark.slow
def test_an_id_past_the_vocabulary_read_by_a_dataloader_worker_is_the_same_one_line(
        pretrain_data, tmp_path, slm):
    data_dir = _copy_data(pretrain_data, tmp_path)
    shard, offset = _first_sample_location(data_dir)
    _write_token(shard, offset + 5, 5000)
    config = tiny_config(tmp_path / "run", data_dir, data={"num_workers": 1})
    proc = slm("pretrain", "--config", config, env={"OMP_NUM_THREADS": "1"})
    _assert_out_of_vocab_error(proc, shard, offset + 5)


def test_verify_data_finds_an_in_range_flipped_token_by_its_sha256(pretrain_data, tmp_path, slm):
    data_dir = _copy_data(pretrain_data, tmp_path)
    shard, offset = _first_sample_location(data_dir)
    value = int(np.fromfile(shard, dtype="<u2")[offset + 5])
    _write_token(shard, offset + 5, value ^ 1)  # still a valid id: only the hash can tell
    config = tiny_config(tmp_path / "run", data_dir, trainer={"max_steps": 1})
    proc = slm("pretrain", "--config", config, "--verify-data", env={"OMP_NUM_THREADS": "1"})
    assert proc.returncode == 2, proc.stderr[-3000:]
    [line] = _error_lines(proc)
    assert line.endswith(f"sha256 mismatch ({shard})")
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.slow
def test_without_verify_data_an_in_range_flipped_token_trains(pretrain_data, tmp_path, slm):
    data_dir = _copy_data(pretrain_data, tmp_path)
    shard, offset = _first_sample_location(data_dir)
    value = int(np.fromfile(shard, dtype="<u2")[offset + 5])
    _write_token(shard, offset + 5, value ^ 1)
    config = tiny_config(tmp_path / "run", data_dir, trainer={"max_steps": 1})
    proc = slm("pretrain", "--config", config, env={"OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "run" / "checkpoints" / "step-000001").is_dir()


@pytest.mark.slow
def test_verify_data_passes_intact_shards_and_trains(pretrain_data, tmp_path, slm):
    config = tiny_config(tmp_path / "run", pretrain_data, trainer={"max_steps": 1})
    proc = slm("pretrain", "--config", config, "--verify-data", env={"OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "verified the sha256 of every shard" in proc.stderr
