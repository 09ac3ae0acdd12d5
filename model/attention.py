"""The attention seam: a registry of kernels the model calls by name, never by import.

Every backend computes the same function (contract of `AttentionFn`):

    fn(q, k, v, document_ids=None) -> out
    q:   [B, T, n_heads, head_dim]        the queries of the T newest positions
    k,v: [B, S, n_kv_heads, head_dim]     all keys/values so far, S >= T (S > T with a KV cache)
    document_ids: LongTensor[B, S] or None (same id = same document, for all S key positions)
    out: [B, T, n_heads, head_dim]

- Scaled dot-product attention with scale 1/sqrt(head_dim).
- Causal, aligned bottom-right: query t sits at absolute position S - T + t and sees keys
  0..S-T+t (flash-attn's convention, which is what a KV cache needs).
- Grouped-query: query head h reads kv head h // (n_heads // n_kv_heads) (HF's `repeat_kv`).
- With `document_ids`, a query also sees only keys of its own document (block-diagonal causal).

`register_backend(name, fn, available=..., priority=...)` adds a backend (the CUDA kernels in
`model/kernels/` use it); `"auto"` picks the available backend of highest priority, so adding
a backend never touches the model. (`model.llama` imports `model.kernels`, whose backends
register themselves, so they are known before any model runs or torch.compile traces one.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from model.config import ModelError

AttentionFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, Optional[torch.Tensor]],
                       torch.Tensor]


@dataclass(frozen=True)
class AttentionBackend:
    name: str
    fn: AttentionFn
    available: Callable[[torch.Tensor], bool]  # can it run on this query's device/dtype, here?
    priority: int  # "auto" prefers higher


_BACKENDS: dict[str, AttentionBackend] = {}
_SELECTED: dict[tuple, AttentionFn] = {}  # (name, device type, dtype, head_dim) -> fn


def register_backend(name: str, fn: AttentionFn,
                     available: Callable[[torch.Tensor], bool] | None = None,
                     priority: int = 0) -> None:
    """Make `fn` selectable as `attention_backend=name`. `available(q)` says whether it can run
    for a query tensor like `q` (installed package, device type, dtype, head_dim; the answer is
    remembered per those, so it must not depend on batch or sequence length); default: always."""
    _BACKENDS[name] = AttentionBackend(name, fn, available or (lambda q: True), priority)
    _SELECTED.clear()


def _backends_by_priority() -> list[AttentionBackend]:
    return sorted(_BACKENDS.values(), key=lambda b: -b.priority)


def backend_names() -> list[str]:
    """Registered backend names, best ("auto"'s first choice when available) first."""
    return [b.name for b in _backends_by_priority()]


def select_backend(name: str, q: torch.Tensor) -> AttentionFn:
    """The kernel for `name` ("auto" = best available for `q`). Raises `ModelError` if `name`
    is unknown or cannot run on `q`'s device/dtype. Remembered per (name, device type, dtype,
    head_dim): a plain dict lookup per call, which torch.compile folds away."""
    key = (name, q.device.type, q.dtype, q.shape[-1])
    if key not in _SELECTED:
        _SELECTED[key] = _select(name, q)
    return _SELECTED[key]


def _select(name: str, q: torch.Tensor) -> AttentionFn:
    backends = _backends_by_priority()
    if name == "auto":
        for backend in backends:
            if backend.available(q):
                return backend.fn
        raise ModelError(f"no attention backend can run on {q.device.type}/{q.dtype}")
    if name not in _BACKENDS:
        raise ModelError(f"unknown attention backend {name!r} "
                         f"(known: auto, {', '.join(backend_names())})")
    backend = _BACKENDS[name]
    if not backend.available(q):
        raise ModelError(f"attention backend {name!r} is not available for "
                         f"{q.device.type}/{q.dtype} tensors here")
    return backend.fn


def attention_mask(q_len: int, document_ids: torch.Tensor | None, kv_len: int,
                   device: torch.device) -> torch.Tensor:
    """Boolean mask, True = may attend: [1, 1, T, S] causal, or [B, 1, T, S] with documents."""
    q_pos = torch.arange(kv_len - q_len, kv_len, device=device)
    k_pos = torch.arange(kv_len, device=device)
    mask = (k_pos[None, :] <= q_pos[:, None])[None, None]
    if document_ids is not None:
        same_doc = document_ids[:, kv_len - q_len:, None] == document_ids[:, None, :]
        mask = mask & same_doc[:, None]
    return mask


def eager_attention(q, k, v, document_ids=None):
    """Reference: explicit mask, softmax in float32. Slow; for tests and debugging."""
    n_rep = q.shape[2] // k.shape[2]
    q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # [B, heads, len, hd]
    k, v = k.repeat_interleave(n_rep, dim=1), v.repeat_interleave(n_rep, dim=1)
    scores = (q @ k.transpose(-2, -1)).float() / math.sqrt(q.shape[-1])
    mask = attention_mask(q.shape[2], document_ids, k.shape[2], q.device)
    scores = scores.masked_fill(~mask, float("-inf"))
    out = scores.softmax(dim=-1).to(v.dtype) @ v
    return out.transpose(1, 2)


def sdpa_attention(q, k, v, document_ids=None):
    """`torch.nn.functional.scaled_dot_product_attention`: flash/memory-efficient kernels for
    plain causal attention; an explicit block-diagonal mask (correct, slower) with documents."""
    q_len, kv_len = q.shape[1], k.shape[1]
    q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
    gqa = q.shape[1] != k.shape[1]
    if document_ids is None and q_len == kv_len:
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
    elif document_ids is None and q_len == 1:  # one new token sees the whole cache
        out = F.scaled_dot_product_attention(q, k, v, enable_gqa=gqa)
    else:  # sdpa's own is_causal is top-left aligned, so build the mask ourselves
        mask = attention_mask(q_len, document_ids, kv_len, q.device)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=gqa)
    return out.transpose(1, 2)


register_backend("eager", eager_attention, priority=0)
register_backend("sdpa", sdpa_attention, priority=10)
