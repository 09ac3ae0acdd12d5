"""AdamW with the usual pretraining parameter groups.

Weight decay applies to matrices of the transformer blocks and the output head only: no decay
on norms' gains, biases (1-D tensors) or the token embeddings (decaying embeddings shrinks rare
tokens' rows towards zero, which OLMo and others found harmful). With tied embeddings the shared
matrix appears once, under ``tok_embeddings``, and is not decayed.
"""

from __future__ import annotations

import torch
from torch import nn


def is_no_decay(name: str, param: torch.Tensor) -> bool:
    """True for parameters that must not be weight-decayed: 1-D tensors and embeddings."""
    return param.ndim < 2 or "tok_embeddings" in name or name.endswith("embedding.weight")


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups: ``decay`` (weight_decay) and ``no_decay`` (0.0), each with a ``name``."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():  # shared (tied) tensors are listed once
        if not param.requires_grad:
            continue
        (no_decay if is_no_decay(name, param) else decay).append(param)
    return [
        {"name": "decay", "params": decay, "weight_decay": weight_decay},
        {"name": "no_decay", "params": no_decay, "weight_decay": 0.0},
    ]


def build_adamw(model: nn.Module, *, lr: float, betas: tuple[float, float], eps: float,
                weight_decay: float) -> torch.optim.AdamW:
    """AdamW over :func:`param_groups`; the fused CUDA kernel when the parameters live on a GPU."""
    groups = param_groups(model, weight_decay)
    on_cuda = all(p.is_cuda for g in groups for p in g["params"])
    return torch.optim.AdamW(groups, lr=lr, betas=tuple(betas), eps=eps, fused=True if on_cuda else None)
