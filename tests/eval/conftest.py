"""Fixtures for the evaluation tests: a tiny model with decisive predictions, exported to a
Hugging Face directory with the fixture tokenizer, and the benchmark files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from tests.eval.benchmark_files import write_hf_layout, write_public
from tests.fixtures.pretrain import TINY_VOCAB

MAX_SEQ_LEN = 96  # short, so that some benchmark items are cut from the left


def tiny_model(max_seq_len: int = MAX_SEQ_LEN, seed: int = 0):
    """debug-100k (GQA, tied head) over the fixture tokenizer's vocabulary, its embedding scaled
    up so the tied head's logits spread over several nats: choices rarely tie, so accuracies
    that must be identical could really differ."""
    from model import Llama, LlamaConfig

    torch.manual_seed(seed)
    model = Llama(LlamaConfig.from_name("debug-100k", vocab_size=TINY_VOCAB, max_seq_len=max_seq_len))
    with torch.no_grad():
        model.tok_embeddings.weight.mul_(2.5)
    return model.eval()


def edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _without_bos_template(data):
    processor = data["post_processor"]
    processor["single"] = [p for p in processor["single"] if "SpecialToken" not in p]
    processor["pair"] = [p for p in processor["pair"] if "SpecialToken" not in p]
    processor["special_tokens"] = {}


def no_bos_tokenizer(source: Path, target: Path) -> Path:
    """A copy of ``source`` (a tokenizer or HF directory) whose tokenizer files say: no BOS
    (tokenizer.json's template and tokenizer_config.json's add_bos_token)."""
    shutil.copytree(source, target)
    edit_json(target / "tokenizer.json", _without_bos_template)
    edit_json(target / "tokenizer_config.json", lambda c: c.update(add_bos_token=False))
    return target


@pytest.fixture(scope="session")
def hf_export(trained_tokenizer, tmp_path_factory) -> Path:
    """tiny_model() as an HF LlamaForCausalLM directory with the fixture tokenizer's files."""
    from model.hf import save_pretrained

    return save_pretrained(tiny_model(), tmp_path_factory.mktemp("eval-export") / "hf",
                           tokenizer_dir=trained_tokenizer)


@pytest.fixture(scope="session")
def public_files(tmp_path_factory) -> dict[str, Path]:
    return write_public(tmp_path_factory.mktemp("benchmarks-public"))


@pytest.fixture(scope="session")
def hf_layout_files(tmp_path_factory) -> dict[str, Path]:
    return write_hf_layout(tmp_path_factory.mktemp("benchmarks-hf"))
