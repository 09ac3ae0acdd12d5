"""LlamaConfig: presets, the ladder rule, overrides and validation."""

import pytest

from model import LlamaConfig, ModelError
from model.config import LADDER_DEPTHS, PRESETS, ladder_config
from model.flops import non_embedding_param_count


def test_tinyllama_preset_has_the_tinyllama_shape():
    c = LlamaConfig.from_name("tinyllama-1.1b")
    assert (c.n_layers, c.dim, c.n_heads, c.n_kv_heads, c.ffn_dim, c.vocab_size) == (
        22, 2048, 32, 4, 5632, 32000)
    assert (c.max_seq_len, c.norm_eps, c.rope_theta, c.tie_embeddings) == (2048, 1e-5, 10000.0, False)


def test_litellama_preset_has_its_shape():
    c = LlamaConfig.from_name("litellama-460m")
    assert (c.n_layers, c.dim, c.n_heads, c.n_kv_heads, c.ffn_dim, c.vocab_size, c.norm_eps) == (
        24, 1024, 16, 2, 4096, 50304, 1e-6)


@pytest.mark.parametrize("name", list(LADDER_DEPTHS))
def test_ladder_presets_follow_the_shape_rule(name):
    c = PRESETS[name]
    assert c == ladder_config(c.n_layers)
    assert c.dim == 64 * c.n_layers and c.head_dim == 64 and c.n_kv_heads == c.n_heads
    assert c.ffn_dim % 256 == 0 and 0 <= c.ffn_dim - 8 * c.dim / 3 < 256


@pytest.mark.parametrize("name", list(LADDER_DEPTHS))
def test_ladder_names_give_the_non_embedding_size_within_a_factor_of_1_5(name):
    nominal = float(name.removeprefix("llama-").removesuffix("m")) * 1e6
    assert nominal / 1.5 < non_embedding_param_count(PRESETS[name]) < nominal * 1.5


def test_from_name_applies_overrides_without_touching_the_preset():
    c = LlamaConfig.from_name("debug-1m", vocab_size=1000, attention_backend="eager")
    assert (c.vocab_size, c.attention_backend, c.dim) == (1000, "eager", 128)
    assert PRESETS["debug-1m"].vocab_size == 4096


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(ModelError, match=r"unknown model preset 'llama-7b' \(known: tinyllama-1.1b, "):
        LlamaConfig.from_name("llama-7b")


def test_unknown_override_field_is_a_model_error():
    with pytest.raises(ModelError, match="unknown LlamaConfig field 'hidden_size'"):
        LlamaConfig.from_name("debug-1m", hidden_size=3)


@pytest.mark.parametrize("overrides, message", [
    (dict(n_heads=3), "n_heads=3 must divide dim=128"),
    (dict(n_kv_heads=3), "n_kv_heads=3 must divide n_heads=4"),
    (dict(dim=0), "dim must be a positive integer, got 0"),
    (dict(n_layers=-1), "n_layers must be a positive integer, got -1"),
    (dict(vocab_size=2.5), "vocab_size must be a positive integer, got 2.5"),
    (dict(norm_eps=0.0), "norm_eps must be a positive number, got 0.0"),
    (dict(rope_theta=-1.0), "rope_theta must be a positive number"),
    (dict(dim=12, n_heads=4, n_kv_heads=1), "head_dim = dim/n_heads = 3 must be even"),
    (dict(tie_embeddings="yes"), "tie_embeddings must be true or false"),
])
def test_invalid_values_raise_one_line_model_errors(overrides, message):
    with pytest.raises(ModelError) as info:
        LlamaConfig.from_name("debug-1m", **overrides)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_model_error_is_a_value_error():
    assert issubclass(ModelError, ValueError)


def test_to_dict_from_dict_round_trips():
    c = LlamaConfig.from_name("litellama-460m", attention_backend="sdpa")
    assert LlamaConfig.from_dict(c.to_dict()) == c


def test_from_dict_rejects_unknown_keys():
    with pytest.raises(ModelError, match="unknown LlamaConfig field 'rope_scaling'"):
        LlamaConfig.from_dict({**PRESETS["debug-1m"].to_dict(), "rope_scaling": 2.0})
