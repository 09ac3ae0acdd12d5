"""Checkpoint → plain ``model.Llama`` (any checkpoint format) → Hugging Face directory or text.

Works without a process group for both formats: a single-file Lightning checkpoint is read
with ``torch.load``; a sharded torch.distributed.checkpoint directory (FSDP2, any world size)
is read with ``torch.distributed.checkpoint.load`` into an unsharded model's state dict,
reading only the model's tensors (not the optimizer's).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from pretrain.training.checkpoint.layout import STATE_NAME, find_checkpoint_dir, read_checkpoint_meta
from pretrain.errors import PretrainError

log = logging.getLogger(__name__)

_PREFIX = "model."  # PretrainModule holds the Llama as `self.model`


def load_model(checkpoint: str | os.PathLike):
    """The checkpoint's ``Llama`` in eval mode, float32, on CPU."""
    from model import Llama, LlamaConfig

    ckpt_dir = find_checkpoint_dir(checkpoint)
    meta = read_checkpoint_meta(ckpt_dir)
    config = LlamaConfig(**meta["model_config"])
    model = Llama(config)
    state = _model_state_dict(ckpt_dir, meta, model)
    model.load_state_dict(state, strict=True)
    return model.float().eval()


def _model_state_dict(ckpt_dir: Path, meta: dict, model) -> dict[str, torch.Tensor]:
    state_path = ckpt_dir / STATE_NAME
    if meta.get("format") == "dcp":
        import warnings

        import torch.distributed.checkpoint as dcp

        wanted = {_PREFIX + key: value for key, value in model.state_dict().items()}
        container = {"state_dict": wanted}
        with warnings.catch_warnings():  # "assuming the intent is to load in a single process": it is
            warnings.simplefilter("ignore", UserWarning)
            dcp.load(container, checkpoint_id=state_path, no_dist=True)
        saved = container["state_dict"]
    else:
        # Our own file (it also holds RNG states and hyperparameters, hence weights_only=False).
        saved = torch.load(state_path, map_location="cpu", weights_only=False)["state_dict"]
    return {key[len(_PREFIX):]: value for key, value in saved.items() if key.startswith(_PREFIX)}


def checkpoint_tokenizer_dir(checkpoint: str | os.PathLike, tokenizer_dir: str | os.PathLike | None = None) -> Path | None:
    """The tokenizer to use with a checkpoint: the one given, else the one its data was prepared with."""
    if tokenizer_dir is not None:
        return Path(tokenizer_dir)
    recorded = read_checkpoint_meta(checkpoint).get("tokenizer_dir")
    return Path(recorded) if recorded and Path(recorded).exists() else None


def export_checkpoint(checkpoint: str | os.PathLike, out_dir: str | os.PathLike,
                      tokenizer_dir: str | os.PathLike | None = None) -> Path:
    """Write a Hugging Face ``LlamaForCausalLM`` directory (safetensors weights, config,
    generation config, tokenizer files) for ``checkpoint`` to ``out_dir`` (which must not exist
    or be empty; ``model.hf.save_pretrained`` builds it under a temporary name)."""
    from model.hf import save_pretrained

    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise PretrainError(f"output exists and is not an empty directory: {out_dir} (--output)")
    tokenizer = checkpoint_tokenizer_dir(checkpoint, tokenizer_dir)
    model = load_model(checkpoint)
    if tokenizer is None:
        log.warning("no tokenizer recorded with the checkpoint and none given: exporting weights only")
    return save_pretrained(model, out_dir, tokenizer_dir=tokenizer)


def generate_text(checkpoint: str | os.PathLike, prompt: str, *, max_new_tokens: int = 64,
                  temperature: float = 0.8, top_k: int | None = 50, top_p: float | None = None,
                  seed: int = 0, tokenizer_dir: str | os.PathLike | None = None) -> str:
    """Sample a continuation of ``prompt`` (returned with the prompt) from ``checkpoint``."""
    import tokenizer as tok
    from model.generate import generate

    tokenizer_path = checkpoint_tokenizer_dir(checkpoint, tokenizer_dir)
    if tokenizer_path is None:
        raise PretrainError(f"no tokenizer recorded with checkpoint {checkpoint}; pass --tokenizer DIR")
    tokenizer = tok.load(tokenizer_path)
    model = load_model(checkpoint)
    input_ids = torch.tensor([tokenizer.encode(prompt, bos=True)], dtype=torch.long)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        output = generate(model, input_ids, max_new_tokens, temperature=temperature, top_k=top_k,
                          top_p=top_p, eos_id=tokenizer.eos_id, generator=generator)
    return tokenizer.decode(output[0].tolist())
