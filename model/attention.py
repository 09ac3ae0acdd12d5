"""The attention seam: a table of kernels the model calls by name, never by import.

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

The backends, in the order "auto" tries them (the first one available for the query wins;
on CPU that is `sdpa`), are the table `BACKENDS` below: `sdpa` and `eager` are defined here,
the others in `model/kernels/attention_backends.py`. That module imports this one (for the
`sdpa_attention` fallback and `select_backend`), so the table names it instead of importing it
and loads it when one of its backends is first asked for: imports run one way, and
`model.llama` never imports `model.kernels`. `register_backend(name, fn, ...)` adds a backend
of one's own (tests do).

A model does not choose per call: `bind_backend` resolves a name once, before any forward and
outside compiled code, for each compute dtype on a device; `model.llama.Attention` stores the
result, so a `torch.compile(fullgraph=True)` block only calls a plain function (the choice
reaches for `importlib` and `functools.lru_cache`, which dynamo cannot trace).
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from typing import Callable, NamedTuple, Optional

import torch
import torch.nn.functional as F

from model.config import ModelError

AttentionFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, Optional[torch.Tensor]],
                       torch.Tensor]
_KERNELS = "model.kernels.attention_backends"


class BackendEntry(NamedTuple):
    """Where a backend lives: `function` (and `available`, None = always) of `module`."""
    module: str
    function: str
    available: str | None
    priority: int  # "auto" prefers higher


BACKENDS: dict[str, BackendEntry] = {
    "flash_attn": BackendEntry(_KERNELS, "flash_attn_attention", "flash_attn_available", 40),
    "flash_attn_cute": BackendEntry(_KERNELS, "flash_attn_cute_attention",
                                    "flash_attn_cute_available", 35),
    "sdpa_cudnn": BackendEntry(_KERNELS, "sdpa_cudnn_attention", "sdpa_cudnn_available", 30),
    "xformers": BackendEntry(_KERNELS, "xformers_attention", "xformers_available", 20),
    "sdpa": BackendEntry(__name__, "sdpa_attention", None, 10),
    "flex": BackendEntry(_KERNELS, "flex_attention_backend", "flex_available", 5),
    "eager": BackendEntry(__name__, "eager_attention", None, 0),
}

# Floating dtypes a forward may compute attention in (parameters in float32 under bf16 autocast
# or FSDP mixed precision still give bf16 queries), so `bind_backend` resolves each ahead.
COMPUTE_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


@dataclass(frozen=True)
class AttentionBackend:
    name: str
    fn: AttentionFn
    available: Callable[[torch.Tensor], bool]  # can it run on this query's device/dtype, here?
    priority: int  # "auto" prefers higher


_BACKENDS: dict[str, AttentionBackend] = {}  # loaded from BACKENDS on first use, or registered
_SELECTED: dict[tuple, AttentionFn] = {}  # (name, device type, dtype, head_dim) -> fn


def _always(q: torch.Tensor) -> bool:
    return True


def register_backend(name: str, fn: AttentionFn,
                     available: Callable[[torch.Tensor], bool] | None = None,
                     priority: int = 0) -> None:
    """Make `fn` selectable as `attention_backend=name`. `available(q)` says whether it can run
    for a query tensor like `q` (installed package, device type, dtype, head_dim; the answer is
    remembered per those, so it must not depend on batch or sequence length); default: always.
    Modules bound before keep their choice until bound again (`Attention.bind_backend`)."""
    _BACKENDS[name] = AttentionBackend(name, fn, available or _always, priority)
    _SELECTED.clear()


def _backend(name: str) -> AttentionBackend:
    """The backend called `name`, importing its module on first use; ModelError if unknown."""
    if name not in _BACKENDS:
        if name not in BACKENDS:
            raise ModelError(f"unknown attention backend {name!r} "
                             f"(known: auto, {', '.join(backend_names())})")
        entry = BACKENDS[name]
        module = importlib.import_module(entry.module)
        available = getattr(module, entry.available) if entry.available else _always
        _BACKENDS[name] = AttentionBackend(name, getattr(module, entry.function), available,
                                           entry.priority)
    return _BACKENDS[name]


def backend_names() -> list[str]:
    """Known backend names, best ("auto"'s first choice when available) first."""
    priority = {name: entry.priority for name, entry in BACKENDS.items()}
    priority.update((name, backend.priority) for name, backend in _BACKENDS.items())
    return sorted(priority, key=lambda name: -priority[name])


def select_backend(name: str, q: torch.Tensor) -> AttentionFn:
    """The kernel for `name` ("auto" = best available for `q`). Raises `ModelError` if `name`
    is unknown or cannot run on `q`'s device/dtype. Remembered per (name, device type, dtype,
    head_dim). Eager code only: a compiled forward calls what `bind_backend` chose."""
    key = (name, q.device.type, q.dtype, q.shape[-1])
    if key not in _SELECTED:
        _SELECTED[key] = _select(name, q)
    return _SELECTED[key]


def _select(name: str, q: torch.Tensor) -> AttentionFn:
    if name == "auto":
        for candidate in backend_names():
            backend = _backend(candidate)
            if backend.available(q):
                return backend.fn
        raise ModelError(f"no attention backend can run on {q.device.type}/{q.dtype}")
    backend = _backend(name)
    if not backend.available(q):
        raise ModelError(f"attention backend {name!r} is not available for "
                         f"{q.device.type}/{q.dtype} tensors here")
    return backend.fn


def bind_backend(name: str, device: torch.device, n_heads: int,
                 head_dim: int) -> dict[tuple[str, torch.dtype], AttentionFn]:
    """`select_backend(name, q)` ahead of time for queries [..., n_heads, head_dim] of every
    `COMPUTE_DTYPES` dtype on `device`: {(device type, dtype): fn}. Dtypes the backend cannot
    run are left out (a forward in one raises `select_backend`'s error); a meta device, which
    holds no data to compute on, gets an empty dict."""
    device = torch.device(device)
    if device.type == "meta":
        return {}
    chosen = {}
    for dtype in COMPUTE_DTYPES:
        q = torch.empty(1, 1, n_heads, head_dim, device=device, dtype=dtype)
        try:
            chosen[(device.type, dtype)] = select_backend(name, q)
        except ModelError:
            continue
    return chosen


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

