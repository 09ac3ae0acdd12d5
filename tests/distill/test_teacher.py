"""The teacher: loaded frozen from an HF directory or one of our runs; its vocabulary checked
against the shards' by tokenizer fingerprint, else by vocabulary size and probe-text ids."""

import shutil

import pytest
import torch

from pretrain.distill.teacher import check_teacher_vocab, load_teacher, teacher_fingerprint
from pretrain.errors import PretrainError


@pytest.fixture(scope="module")
def hf_teacher(trained_run, trained_tokenizer, tmp_path_factory):
    """The trained run exported as an HF Llama directory with its tokenizer files."""
    from model.hf import save_pretrained
    from pretrain.export import load_model

    return save_pretrained(load_model(trained_run), tmp_path_factory.mktemp("hf") / "teacher",
                           tokenizer_dir=trained_tokenizer)


def copy_weights_only(hf_dir, destination):
    destination.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(hf_dir / name, destination / name)
    return destination


def test_a_run_directory_loads_as_a_frozen_float32_llama_in_eval_mode(trained_run):
    teacher = load_teacher(trained_run)
    assert not teacher.training
    assert all(not p.requires_grad for p in teacher.parameters())
    assert {p.dtype for p in teacher.parameters()} == {torch.float32}


def test_an_hf_export_loads_with_the_runs_weights(trained_run, hf_teacher):
    from_run, from_hf = load_teacher(trained_run), load_teacher(hf_teacher)
    tokens = torch.randint(0, 1024, (2, 16))
    with torch.no_grad():
        torch.testing.assert_close(from_hf(tokens), from_run(tokens), rtol=0, atol=1e-6)
    assert teacher_fingerprint(from_hf) == teacher_fingerprint(from_run)


def test_a_missing_teacher_path_is_refused(tmp_path):
    with pytest.raises(PretrainError, match=r"^teacher not found \(.*nowhere\)$"):
        load_teacher(tmp_path / "nowhere")


def test_a_directory_without_config_or_checkpoints_is_not_a_llama(tmp_path):
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(PretrainError, match="teacher is not a Llama"):
        load_teacher(tmp_path)


def test_an_hf_directory_of_another_architecture_is_not_a_loadable_llama(hf_teacher, tmp_path):
    other = copy_weights_only(hf_teacher, tmp_path / "gpt2")
    (other / "config.json").write_text('{"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}')
    with pytest.raises(PretrainError, match="not a loadable Llama: not a Llama checkpoint"):
        load_teacher(other)


@pytest.mark.parametrize("which", ["run", "hf"])
def test_a_teacher_with_the_shards_tokenizer_passes_by_fingerprint(which, trained_run, hf_teacher,
                                                                    pretrain_data):
    teacher = trained_run if which == "run" else hf_teacher
    assert check_teacher_vocab(teacher, pretrain_data).startswith("tokenizer fingerprint")


def test_the_same_vocabulary_in_other_tokenizer_bytes_passes_by_probe_ids(hf_teacher,
                                                                       pretrain_data, tmp_path):
    from sentencepiece import sentencepiece_model_pb2

    teacher = shutil.copytree(hf_teacher, tmp_path / "teacher")
    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString((teacher / "tokenizer.model").read_bytes())
    proto.trainer_spec.input.append("a-corpus-file-elsewhere.txt")  # bytes change, ids do not
    (teacher / "tokenizer.model").write_bytes(proto.SerializeToString())
    assert check_teacher_vocab(teacher, pretrain_data) == "vocabulary size and probe-text ids"


def test_a_teacher_with_another_tokenizer_is_a_vocabulary_mismatch(hf_teacher, pretrain_data,
                                                                  corpus_files, tmp_path):
    import tokenizer

    teacher = copy_weights_only(hf_teacher, tmp_path / "teacher")
    tokenizer.train(corpus_files.paths[:1], 700, tmp_path / "other", seed=0)
    shutil.copy(tmp_path / "other" / "tokenizer.model", teacher / "tokenizer.model")
    with pytest.raises(PretrainError, match=r"vocabulary mismatch .*: 700 vs 1024 ids"):
        check_teacher_vocab(teacher, pretrain_data)


def test_a_teacher_without_tokenizer_files_cannot_be_checked(hf_teacher, pretrain_data, tmp_path):
    teacher = copy_weights_only(hf_teacher, tmp_path / "teacher")
    with pytest.raises(PretrainError, match="no tokenizer files with it"):
        check_teacher_vocab(teacher, pretrain_data)


def test_a_teacher_predicting_fewer_ids_than_the_shards_hold_is_a_mismatch(hf_teacher,
                                                                         pretrain_data):
    with pytest.raises(PretrainError, match="the teacher predicts 512 ids, the shards' "
                                            "tokenizer has 1024"):
        check_teacher_vocab(hf_teacher, pretrain_data, teacher_vocab_size=512)
