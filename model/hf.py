"""Hugging Face interop: our `Llama` <-> a `LlamaForCausalLM` directory (safetensors + JSON).

Needs neither transformers nor the Hub: config.json is written and read here. The rotary
layout is the same on both sides (rotate_half, see `model.llama`), so q/k weights are copied
as they are; only parameter names change (`HF_NAMES`).
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import tempfile
from pathlib import Path

import torch

from model.config import LlamaConfig, ModelError
from model.llama import Llama

TOKENIZER_FILES = ("tokenizer.model", "tokenizer.json", "tokenizer_config.json",
                   "special_tokens_map.json")

# Our parameter name (per layer, after "layers.{i}.") -> HF's (after "model.layers.{i}.").
HF_LAYER_NAMES = {
    "attention.wq.weight": "self_attn.q_proj.weight",
    "attention.wk.weight": "self_attn.k_proj.weight",
    "attention.wv.weight": "self_attn.v_proj.weight",
    "attention.wo.weight": "self_attn.o_proj.weight",
    "feed_forward.w1.weight": "mlp.gate_proj.weight",
    "feed_forward.w3.weight": "mlp.up_proj.weight",
    "feed_forward.w2.weight": "mlp.down_proj.weight",
    "attention_norm.weight": "input_layernorm.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
}
HF_NAMES = {"tok_embeddings.weight": "model.embed_tokens.weight",
            "norm.weight": "model.norm.weight", "output.weight": "lm_head.weight"}


def hf_name(name: str) -> str:
    """HF's name for our parameter `name`:
    layers.3.attention.wq.weight -> model.layers.3.self_attn.q_proj.weight."""
    if name in HF_NAMES:
        return HF_NAMES[name]
    _, index, rest = name.split(".", 2)
    return f"model.layers.{index}.{HF_LAYER_NAMES[rest]}"


def config_to_hf(config: LlamaConfig, dtype: torch.dtype = torch.float32, bos_token_id: int = 1,
                 eos_token_id: int = 2) -> dict:
    """config.json contents of a `LlamaForCausalLM` with this shape. Written for transformers
    4.x and 5.x alike (rope_theta at top level and in rope_parameters; dtype and torch_dtype)."""
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": config.vocab_size,
        "hidden_size": config.dim,
        "intermediate_size": config.ffn_dim,
        "num_hidden_layers": config.n_layers,
        "num_attention_heads": config.n_heads,
        "num_key_value_heads": config.n_kv_heads,
        "head_dim": config.head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": config.max_seq_len,
        "rms_norm_eps": config.norm_eps,
        "rope_theta": float(config.rope_theta),
        "rope_scaling": None,
        "rope_parameters": {"rope_type": "default", "rope_theta": float(config.rope_theta)},
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
        "tie_word_embeddings": config.tie_embeddings,
        "bos_token_id": bos_token_id,
        "eos_token_id": eos_token_id,
        "initializer_range": 0.02,
        "pretraining_tp": 1,
        "use_cache": True,
        "dtype": str(dtype).removeprefix("torch."),
        "torch_dtype": str(dtype).removeprefix("torch."),
    }


def config_from_hf(hf: dict, where: str = "config.json") -> LlamaConfig:
    """Our config for an HF Llama config.json; `ModelError` for anything we do not implement."""
    if hf.get("model_type") != "llama" and "LlamaForCausalLM" not in hf.get("architectures", []):
        raise ModelError(f"not a Llama checkpoint: model_type {hf.get('model_type')!r}, "
                         f"architectures {hf.get('architectures')} ({where})")
    rope = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    unsupported = {
        "rope_scaling": rope_type != "default" and rope_type,
        "attention_bias": hf.get("attention_bias", False),
        "mlp_bias": hf.get("mlp_bias", False),
        "hidden_act": hf.get("hidden_act", "silu") != "silu" and hf.get("hidden_act"),
        "pretraining_tp": hf.get("pretraining_tp", 1) not in (1, None) and hf.get("pretraining_tp"),
    }
    for key, value in unsupported.items():
        if value:
            raise ModelError(f"unsupported Llama feature {key}={value!r} ({where})")
    try:
        n_heads = hf["num_attention_heads"]
        config = LlamaConfig(
            vocab_size=hf["vocab_size"], dim=hf["hidden_size"], n_layers=hf["num_hidden_layers"],
            n_heads=n_heads, n_kv_heads=hf.get("num_key_value_heads") or n_heads,
            ffn_dim=hf["intermediate_size"], max_seq_len=hf.get("max_position_embeddings", 2048),
            rope_theta=rope.get("rope_theta", hf.get("rope_theta", 10000.0)),
            norm_eps=hf.get("rms_norm_eps", 1e-6),
            tie_embeddings=bool(hf.get("tie_word_embeddings", False)))
    except KeyError as e:
        raise ModelError(f"missing key {e.args[0]!r} ({where})") from None
    except ModelError as e:
        raise ModelError(f"{e} ({where})") from None
    if hf.get("head_dim") not in (None, config.head_dim):
        raise ModelError(f"unsupported head_dim={hf['head_dim']} != hidden_size/"
                         f"num_attention_heads={config.head_dim} ({where})")
    return config


def save_pretrained(model: Llama, out_dir: str | os.PathLike, tokenizer_dir=None, *,
                    dtype: torch.dtype | None = None, bos_token_id: int = 1,
                    eos_token_id: int = 2) -> Path:
    """Write `model` as an HF `LlamaForCausalLM` directory: model.safetensors, config.json,
    generation_config.json, plus the tokenizer files found in `tokenizer_dir` (any of
    `TOKENIZER_FILES`). Weights in `dtype` (default: the model's). Built in a temporary
    directory beside `out_dir` and renamed into place; `ModelError` if `out_dir` already exists
    and is not empty, or `tokenizer_dir` holds no tokenizer file. Returns `out_dir`."""
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ModelError(f"output exists and is not an empty directory ({out_dir})")
    tokenizer_files = []
    if tokenizer_dir is not None:
        tokenizer_files = [Path(tokenizer_dir, name) for name in TOKENIZER_FILES
                           if Path(tokenizer_dir, name).is_file()]
        if not tokenizer_files:
            raise ModelError(f"no tokenizer files ({', '.join(TOKENIZER_FILES)}) "
                             f"in {tokenizer_dir}")
    dtype = dtype or model.tok_embeddings.weight.dtype
    tensors = {}
    for name, tensor in model.state_dict().items():
        if name == "output.weight" and model.config.tie_embeddings:
            continue  # HF re-ties lm_head to embed_tokens; safetensors refuses shared storage
        if hasattr(tensor, "full_tensor"):  # a DTensor shard (FSDP2): gather the whole weight
            tensor = tensor.full_tensor()
        tensors[hf_name(name)] = tensor.detach().to("cpu", dtype).contiguous()

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        save_file(tensors, tmp / "model.safetensors", metadata={"format": "pt"})
        hf_config = config_to_hf(model.config, dtype, bos_token_id, eos_token_id)
        (tmp / "config.json").write_text(json.dumps(hf_config, indent=2) + "\n")
        generation = {"bos_token_id": bos_token_id, "eos_token_id": eos_token_id}
        (tmp / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n")
        for path in tokenizer_files:
            shutil.copyfile(path, tmp / path.name)
        if out_dir.exists():
            out_dir.rmdir()  # empty, checked above
        tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _read_state_dict(directory: Path) -> dict[str, torch.Tensor]:
    """HF-named tensors from model.safetensors, a sharded index, or pytorch_model.bin."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    single, index = directory / "model.safetensors", directory / "model.safetensors.index.json"
    try:
        if single.is_file():
            return load_file(single)
        if index.is_file():
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            return {k: v for shard in shards for k, v in load_file(directory / shard).items()}
        if (directory / "pytorch_model.bin").is_file():
            return torch.load(directory / "pytorch_model.bin", map_location="cpu",
                              weights_only=True)
    except (SafetensorError, OSError, KeyError, ValueError, RuntimeError, EOFError,
            pickle.UnpicklingError) as e:
        reason = (str(e).splitlines() or [type(e).__name__])[0]
        raise ModelError(f"cannot read weights: {reason} ({directory})") from None
    raise ModelError(f"no weights (model.safetensors, model.safetensors.index.json or "
                     f"pytorch_model.bin) in {directory}")


def load_pretrained(directory: str | os.PathLike, dtype: torch.dtype = torch.float32,
                    device: torch.device | str = "cpu") -> Llama:
    """A `Llama` (eval mode) from an HF Llama directory: ours from `save_pretrained`, or a
    real HF checkpoint (single or sharded safetensors, or pytorch_model.bin). Raises
    `ModelError` naming the directory for a missing dir, bad config.json, unsupported features
    (rope scaling, biases, other activations), or missing/mis-shaped weights."""
    directory = Path(directory)
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise ModelError(f"no config.json in {directory} (not an HF model directory)")
    try:
        hf_config = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelError(f"corrupt config.json: {e} ({config_path})") from None
    if not isinstance(hf_config, dict):
        raise ModelError(f"corrupt config.json: not a JSON object ({config_path})")
    config = config_from_hf(hf_config, where=str(config_path))
    hf_state = _read_state_dict(directory)

    with torch.device("meta"):
        model = Llama(config)
    state = {}
    for name, param in model.state_dict().items():
        source = hf_name(name)
        if name == "output.weight" and config.tie_embeddings:
            source = HF_NAMES["tok_embeddings.weight"]  # lm_head.weight, if saved, is a copy
        if source not in hf_state:
            raise ModelError(f"missing weight {source} ({directory})")
        if hf_state[source].shape != param.shape:
            raise ModelError(f"weight {source} has shape {tuple(hf_state[source].shape)}, "
                             f"config.json implies {tuple(param.shape)} ({directory})")
        state[name] = hf_state[source].to(dtype)
    model.to_empty(device=device)
    model.load_state_dict(state)
    model.rope.init_weights()  # buffers are not in state dicts: compute them on `device`
    return model.to(dtype).eval()
