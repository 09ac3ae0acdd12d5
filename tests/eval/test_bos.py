"""BOS by default as the tokenizer's files say (what lm-eval's hf backend does with add_bos_token
unset), checked against transformers' own reading of the same files."""

from __future__ import annotations

import logging
import shutil

import pytest

from pretrain.errors import PretrainError
from pretrain.eval.bos import resolve_bos
from tests.eval.conftest import edit_json, no_bos_tokenizer

BOS_ID = 1  # tokenizer/train.py: unk=0, bos=1, eos=2


def _config_only(source, target, add_bos):
    shutil.copytree(source, target)
    (target / "tokenizer.json").unlink()
    edit_json(target / "tokenizer_config.json", lambda c: c.update(add_bos_token=add_bos))
    return target


def _transformers_adds_bos(directory) -> bool:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(directory)).encode("the river")[0] == BOS_ID


VARIANTS = {
    "as trained": lambda src, dst: shutil.copytree(src, dst),
    "no BOS in either file": no_bos_tokenizer,
    "config only, add_bos_token false": lambda src, dst: _config_only(src, dst, False),
    "config only, add_bos_token true": lambda src, dst: _config_only(src, dst, True),
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_default_is_what_transformers_does_with_the_same_files(variant, trained_tokenizer, tmp_path):
    directory = VARIANTS[variant](trained_tokenizer, tmp_path / "tok")
    choice = resolve_bos(None, directory, BOS_ID)
    assert choice.source == "tokenizer"
    assert choice.bos == _transformers_adds_bos(directory)


def test_our_tokenizers_put_bos_first(trained_tokenizer):
    assert resolve_bos(None, trained_tokenizer, BOS_ID).bos is True


@pytest.mark.parametrize("flag", [True, False])
def test_flag_overrides_the_tokenizer(flag, trained_tokenizer, tmp_path):
    for directory in (trained_tokenizer, no_bos_tokenizer(trained_tokenizer, tmp_path / "nobos")):
        choice = resolve_bos(flag, directory, BOS_ID)
        assert (choice.bos, choice.source) == (flag, "flag")


def test_files_that_contradict_each_other_are_an_error_naming_the_directory(trained_tokenizer, tmp_path):
    directory = shutil.copytree(trained_tokenizer, tmp_path / "tok")
    edit_json(directory / "tokenizer_config.json", lambda c: c.update(add_bos_token=False))
    with pytest.raises(PretrainError, match=rf"add_bos_token=false but tokenizer.json's post-processor adds BOS.*--no-bos \({directory}\)"):
        resolve_bos(None, directory, BOS_ID)
    assert resolve_bos(False, directory, BOS_ID).bos is False  # a flag settles it


def test_bare_sentencepiece_model_assumes_bos_with_a_warning(trained_tokenizer, tmp_path, caplog):
    directory = tmp_path / "bare"
    directory.mkdir()
    shutil.copy(trained_tokenizer / "tokenizer.model", directory)
    with caplog.at_level(logging.WARNING, logger="pretrain.eval.bos"):
        choice = resolve_bos(None, directory / "tokenizer.model", BOS_ID)
    assert (choice.bos, choice.source) == (True, "tokenizer")
    assert "--no-bos" in caplog.text
