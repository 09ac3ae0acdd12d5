"""`data.val_path`: validate on another prepared directory (a clean held-out set) tokenised with
the training data's tokenizer; anything else is one `error:` line before any work."""

import json
from types import SimpleNamespace

import numpy as np
import pytest

from tests.fixtures.pretrain import metrics_losses, tiny_config
from tests.fixtures.tokenizer import varied_documents
from tests.pretrain.cli_in_process import slm_in_process
from tests.user_errors import assert_user_error

SEQ_LEN = 32


@pytest.fixture(scope="module")
def held_out(trained_tokenizer, tmp_path_factory):
    """Documents the training corpus does not hold, prepared with its tokenizer, no val split."""
    from data.prepare import prepare

    root = tmp_path_factory.mktemp("held-out")
    corpus = root / "held-out.jsonl"
    corpus.write_text("".join(json.dumps({"text": d}) + "\n" for d in varied_documents(60, seed=1)))
    prepare([corpus], trained_tokenizer, root / "prepared", shard_tokens=4096, workers=1,
            progress_bar=False)
    return root / "prepared"


def _datamodule(data_dir, val_path=None):
    from pretrain.training.datamodule import PretrainDataModule

    datamodule = PretrainDataModule(path=str(data_dir), seq_len=SEQ_LEN, global_batch_tokens=256,
                                    micro_batch_size=4, num_workers=0, val_sequences=8,
                                    val_path=None if val_path is None else str(val_path))
    datamodule.trainer = SimpleNamespace(global_rank=0, world_size=1)
    datamodule.prepare_and_inspect()
    return datamodule


def _val_inputs(datamodule) -> np.ndarray:
    return np.concatenate([batch["input_ids"].numpy() for batch in datamodule.val_dataloader()])


def test_validation_reads_the_train_split_of_a_val_path_without_val_split_in_order(
        pretrain_data, held_out):
    tokens = np.fromfile(held_out / "train-00000.bin", dtype=np.uint16)
    inputs = _val_inputs(_datamodule(pretrain_data, held_out))
    assert inputs.shape == (8, SEQ_LEN)
    assert np.array_equal(inputs, tokens[:8 * SEQ_LEN].reshape(8, SEQ_LEN))


def test_a_val_path_with_a_val_split_is_validated_on_that_split(pretrain_data):
    own = _val_inputs(_datamodule(pretrain_data))
    assert np.array_equal(_val_inputs(_datamodule(pretrain_data, pretrain_data)), own)


def test_training_is_unchanged_and_validation_moves_to_the_val_path(run_pretrain, trained_run,
                                                                    pretrain_data, held_out,
                                                                    tmp_path):
    run_dir = tmp_path / "run"
    run_pretrain("--config", tiny_config(run_dir, pretrain_data, data={"val_path": str(held_out)}))
    assert metrics_losses(run_dir) == metrics_losses(trained_run)
    got, default = metrics_losses(run_dir, "val_loss"), metrics_losses(trained_run, "val_loss")
    assert sorted(got) == sorted(default) == [2, 4]
    assert all(abs(got[step] - default[step]) > 1e-3 for step in got)


def test_a_val_path_prepared_with_another_tokenizer_is_refused(capsys, corpus_files, pretrain_data,
                                                                tmp_path):
    import tokenizer
    from data.prepare import prepare

    other = tokenizer.train(corpus_files.paths, 700, tmp_path / "other-tok")
    prepare(corpus_files.paths[:1], other, tmp_path / "other", workers=1, progress_bar=False)
    config = tiny_config(tmp_path / "run", pretrain_data, data={"val_path": str(tmp_path / "other")})
    proc = slm_in_process(capsys, "pretrain", "--config", config)
    assert_user_error(proc, f"{tmp_path / 'other'} was prepared with another tokenizer",
                      "vocab 700", "(data.val_path)")
    assert not (tmp_path / "run").exists()


def test_a_val_path_that_is_not_prepared_data_is_refused(capsys, pretrain_data, tmp_path):
    (tmp_path / "empty").mkdir()
    config = tiny_config(tmp_path / "run", pretrain_data, data={"val_path": str(tmp_path / "empty")})
    proc = slm_in_process(capsys, "pretrain", "--config", config)
    assert_user_error(proc, "not a prepared data directory", "(data.val_path)")
    assert not (tmp_path / "run").exists()
