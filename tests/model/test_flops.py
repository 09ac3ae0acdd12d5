"""Parameter counts and FLOPs per token, against the real module and hand counts."""

import pytest
import torch

from model import Llama, LlamaConfig
from model.config import PRESETS
from model.flops import (embedding_param_count, flops_per_token, non_embedding_param_count,
                         param_count, weight_memory_bytes)


def module_numel(config):
    with torch.device("meta"):  # shapes only: even the 1.1B model costs nothing
        model = Llama(config)
    return sum(p.numel() for p in model.parameters())  # shared (tied) parameters counted once


@pytest.mark.parametrize("name", list(PRESETS))
def test_param_count_formula_equals_module_numel(name):
    assert param_count(PRESETS[name]) == module_numel(PRESETS[name])


@pytest.mark.parametrize("n_kv_heads, tied", [(1, True), (2, False), (8, True)])
def test_param_count_formula_equals_module_numel_for_gqa_and_tying(n_kv_heads, tied):
    config = LlamaConfig(vocab_size=100, dim=64, n_layers=3, n_heads=8, n_kv_heads=n_kv_heads,
                         ffn_dim=160, tie_embeddings=tied)
    assert param_count(config) == module_numel(config)


def test_tinyllama_has_exactly_1_100_048_384_parameters():
    assert param_count(PRESETS["tinyllama-1.1b"]) == 1_100_048_384


def test_litellama_has_exactly_461_685_760_parameters():
    assert param_count(PRESETS["litellama-460m"]) == 461_685_760


def test_tinyllama_non_embedding_count_by_hand():
    # per layer: q,o 2048², k,v 2048·256, SwiGLU 3·2048·5632, two norms 2·2048; final norm 2048
    per_layer = 2 * 2048**2 + 2 * 2048 * 256 + 3 * 2048 * 5632 + 2 * 2048
    assert non_embedding_param_count(PRESETS["tinyllama-1.1b"]) == 22 * per_layer + 2048 == 968_976_384


def test_tied_embeddings_count_the_shared_matrix_once():
    untied = PRESETS["debug-1m"]
    tied = untied.replace(tie_embeddings=True)
    assert embedding_param_count(untied) - embedding_param_count(tied) == 4096 * 128
    assert non_embedding_param_count(tied) == non_embedding_param_count(untied)


def test_flops_per_token_of_tinyllama_by_hand():
    # 6·(non-embedding + LM head) + 12·L·dim·T
    n = 968_976_384 + 32000 * 2048
    assert flops_per_token(PRESETS["tinyllama-1.1b"], 2048) == 6 * n + 12 * 22 * 2048 * 2048
    assert flops_per_token(PRESETS["tinyllama-1.1b"], 2048) == pytest.approx(7.314e9, rel=1e-3)


def test_flops_per_token_of_litellama_by_hand():
    n = 358_663_168 + 50304 * 1024
    assert non_embedding_param_count(PRESETS["litellama-460m"]) == 358_663_168
    assert flops_per_token(PRESETS["litellama-460m"], 1024) == 6 * n + 12 * 24 * 1024 * 1024


def test_flops_per_token_do_not_depend_on_tying():
    config = PRESETS["debug-1m"]
    assert flops_per_token(config, 512) == flops_per_token(config.replace(tie_embeddings=True), 512)


def test_flops_attention_term_grows_linearly_with_seq_len():
    config = PRESETS["llama-10m"]
    step = flops_per_token(config, 2048) - flops_per_token(config, 1024)
    assert step == 12 * config.n_layers * config.dim * 1024


def test_weight_memory_in_bf16_is_two_bytes_per_parameter():
    assert weight_memory_bytes(PRESETS["tinyllama-1.1b"]) == 2_200_096_768
    assert weight_memory_bytes(PRESETS["tinyllama-1.1b"], bytes_per_param=4) == 4_400_193_536
