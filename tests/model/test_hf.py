"""HF interop: our Llama and transformers' LlamaForCausalLM agree in both directions."""

import json

import pytest
import torch

from model import Llama, LlamaConfig, ModelError
from model.generate import generate
from model.hf import TOKENIZER_FILES, config_from_hf, config_to_hf, load_pretrained, save_pretrained

transformers = pytest.importorskip("transformers")

# GQA ratios 1, 2, 4, 8; tied and untied; non-default rope_theta and norm_eps.
CONFIGS = {
    "mha-tied": LlamaConfig(vocab_size=211, dim=64, n_layers=2, n_heads=4, n_kv_heads=4, ffn_dim=96,
                            max_seq_len=64, rope_theta=500.0, norm_eps=1e-4, tie_embeddings=True),
    "gqa2-untied": LlamaConfig(vocab_size=128, dim=128, n_layers=3, n_heads=8, n_kv_heads=4,
                               ffn_dim=160, max_seq_len=64, rope_theta=50000.0, norm_eps=1e-6),
    "gqa4-tied": LlamaConfig(vocab_size=99, dim=64, n_layers=2, n_heads=8, n_kv_heads=2, ffn_dim=128,
                             max_seq_len=64, rope_theta=10000.0, norm_eps=3e-5, tie_embeddings=True),
    "mqa8-untied": LlamaConfig(vocab_size=160, dim=128, n_layers=2, n_heads=8, n_kv_heads=1,
                               ffn_dim=256, max_seq_len=64, rope_theta=1234.0, norm_eps=1e-5),
}
TOLERANCE = 1e-4


def random_model(config, seed=0):
    """Our model with large random weights, so that any layout mismatch shows in the logits."""
    torch.manual_seed(seed)
    model = Llama(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.15) if p.dim() == 2 else p.uniform_(0.5, 1.5)
    return model


def logits_diff(ours, hf, input_ids):
    with torch.no_grad():
        return (ours(input_ids) - hf(input_ids).logits).abs().max().item()


@pytest.mark.parametrize("name", list(CONFIGS))
def test_ours_saved_loads_in_transformers_with_the_same_logits(name, tmp_path):
    ours = random_model(CONFIGS[name])
    save_pretrained(ours, tmp_path / "hf")
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    assert type(hf).__name__ == "LlamaForCausalLM" and hf.dtype == torch.float32
    input_ids = torch.randint(0, ours.config.vocab_size, (2, 40))
    assert logits_diff(ours, hf, input_ids) <= TOLERANCE


@pytest.mark.parametrize("name", list(CONFIGS))
def test_transformers_saved_loads_in_ours_with_the_same_logits(name, tmp_path):
    hf_config = transformers.LlamaConfig(**config_to_hf(CONFIGS[name]))
    torch.manual_seed(1)
    hf = transformers.LlamaForCausalLM(hf_config).eval()
    with torch.no_grad():
        for p in hf.parameters():
            p.normal_(0, 0.15) if p.dim() == 2 else p.uniform_(0.5, 1.5)
    hf.save_pretrained(tmp_path / "hf")
    ours = load_pretrained(tmp_path / "hf")
    assert ours.config.replace(attention_backend="auto") == CONFIGS[name]
    assert logits_diff(ours, hf, torch.randint(0, hf_config.vocab_size, (2, 40))) <= TOLERANCE


@pytest.mark.parametrize("name", ["gqa2-untied", "gqa4-tied"])
def test_greedy_generation_matches_transformers_generate(name, tmp_path):
    ours = random_model(CONFIGS[name], seed=3)
    save_pretrained(ours, tmp_path / "hf")
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    prompt = torch.randint(0, ours.config.vocab_size, (2, 6))
    expected = hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=20,
                           min_new_tokens=20, do_sample=False, eos_token_id=None, pad_token_id=0)
    assert torch.equal(generate(ours, prompt, 20, temperature=0), expected)


def test_rotary_layout_is_transformers_rotate_half():
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb
    ours = Llama(CONFIGS["gqa2-untied"])
    cos, sin = ours.rope(start_pos=5, seq_len=7)
    q, k = torch.randn(2, 8, 7, 16), torch.randn(2, 4, 7, 16)  # HF layout [B, heads, T, hd]
    hf_q, hf_k = apply_rotary_pos_emb(q, k, cos[None], sin[None])
    from model.llama import apply_rotary
    torch.testing.assert_close(apply_rotary(q.transpose(1, 2), cos, sin).transpose(1, 2), hf_q)
    torch.testing.assert_close(apply_rotary(k.transpose(1, 2), cos, sin).transpose(1, 2), hf_k)


def test_saved_directory_has_weights_config_and_generation_config(tmp_path):
    ours = random_model(CONFIGS["gqa4-tied"]).to(torch.bfloat16)
    out = save_pretrained(ours, tmp_path / "hf")
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "generation_config.json",
                                                     "model.safetensors"]
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and config["torch_dtype"] == "bfloat16"
    assert (config["num_key_value_heads"], config["rope_theta"], config["rms_norm_eps"],
            config["tie_word_embeddings"], config["bos_token_id"], config["eos_token_id"]) == (
        2, 10000.0, 3e-5, True, 1, 2)
    hf = transformers.AutoModelForCausalLM.from_pretrained(out)
    assert hf.dtype == torch.bfloat16
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no temp dir left behind


def test_save_copies_the_tokenizer_files(trained_tokenizer, tmp_path):
    out = save_pretrained(random_model(CONFIGS["mha-tied"]), tmp_path / "hf", trained_tokenizer)
    copied = [n for n in TOKENIZER_FILES if (trained_tokenizer / n).is_file()]
    assert "tokenizer.model" in copied
    for name in copied:
        assert (out / name).read_bytes() == (trained_tokenizer / name).read_bytes()


def test_save_refuses_a_non_empty_output_dir(tmp_path):
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "keep.txt").write_text("x")
    with pytest.raises(ModelError, match="output exists and is not an empty directory"):
        save_pretrained(random_model(CONFIGS["mha-tied"]), tmp_path / "hf")
    assert (tmp_path / "hf" / "keep.txt").read_text() == "x"


def test_load_reads_sharded_safetensors(tmp_path):
    hf = transformers.LlamaForCausalLM(transformers.LlamaConfig(**config_to_hf(CONFIGS["gqa2-untied"])))
    hf.save_pretrained(tmp_path / "hf", max_shard_size="100KB")
    assert (tmp_path / "hf" / "model.safetensors.index.json").is_file()
    assert logits_diff(load_pretrained(tmp_path / "hf"), hf.eval(), torch.randint(0, 128, (1, 9))) <= TOLERANCE


def test_load_reads_pytorch_model_bin(tmp_path):
    ours = random_model(CONFIGS["mqa8-untied"])
    save_pretrained(ours, tmp_path / "hf")
    from safetensors.torch import load_file
    state = load_file(tmp_path / "hf" / "model.safetensors")
    (tmp_path / "hf" / "model.safetensors").unlink()
    torch.save(state, tmp_path / "hf" / "pytorch_model.bin")
    x = torch.randint(0, 160, (1, 9))
    with torch.no_grad():
        torch.testing.assert_close(load_pretrained(tmp_path / "hf")(x), ours(x))


def test_load_missing_dir_is_a_model_error(tmp_path):
    with pytest.raises(ModelError, match="no config.json in .*nowhere"):
        load_pretrained(tmp_path / "nowhere")


def test_load_corrupt_config_is_a_model_error(tmp_path):
    save_pretrained(random_model(CONFIGS["mha-tied"]), tmp_path / "hf")
    (tmp_path / "hf" / "config.json").write_text('{"model_type": "llama", ')
    with pytest.raises(ModelError, match="corrupt config.json"):
        load_pretrained(tmp_path / "hf")


def test_load_truncated_weights_is_a_model_error(tmp_path):
    save_pretrained(random_model(CONFIGS["mha-tied"]), tmp_path / "hf")
    weights = tmp_path / "hf" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ModelError, match="cannot read weights"):
        load_pretrained(tmp_path / "hf")


def test_load_without_weights_is_a_model_error(tmp_path):
    save_pretrained(random_model(CONFIGS["mha-tied"]), tmp_path / "hf")
    (tmp_path / "hf" / "model.safetensors").unlink()
    with pytest.raises(ModelError, match="no weights"):
        load_pretrained(tmp_path / "hf")


def test_load_with_a_missing_tensor_names_it(tmp_path):
    from safetensors.torch import load_file, save_file
    save_pretrained(random_model(CONFIGS["gqa2-untied"]), tmp_path / "hf")
    state = load_file(tmp_path / "hf" / "model.safetensors")
    del state["model.layers.1.mlp.up_proj.weight"]
    save_file(state, tmp_path / "hf" / "model.safetensors")
    with pytest.raises(ModelError, match="missing weight model.layers.1.mlp.up_proj.weight"):
        load_pretrained(tmp_path / "hf")


@pytest.mark.parametrize("change, message", [
    ({"rope_scaling": {"rope_type": "llama3", "factor": 8.0}}, "unsupported Llama feature rope_scaling='llama3'"),
    ({"rope_parameters": {"rope_type": "linear", "factor": 2.0, "rope_theta": 1e4}},
     "unsupported Llama feature rope_scaling='linear'"),
    ({"attention_bias": True}, "unsupported Llama feature attention_bias=True"),
    ({"hidden_act": "gelu"}, "unsupported Llama feature hidden_act='gelu'"),
    ({"model_type": "mistral", "architectures": ["MistralForCausalLM"]}, "not a Llama checkpoint"),
    ({"num_attention_heads": 5}, "n_heads=5 must divide dim=64"),
    ({"head_dim": 32}, "unsupported head_dim=32"),
])
def test_unsupported_hf_configs_are_model_errors(change, message):
    hf = {**config_to_hf(CONFIGS["mha-tied"]), "rope_parameters": None, **change}
    with pytest.raises(ModelError, match=message.replace("(", r"\(").replace("[", r"\[")):
        config_from_hf(hf)
