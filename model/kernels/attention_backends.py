"""Fused attention backends, named in `model.attention.BACKENDS` and loaded from there.

Each function keeps the contract of `model.attention.AttentionFn` (q [B, T, H, hd], k/v
[B, S, KV, hd], bottom-right causal, GQA, optional `document_ids` [B, S]) and is checked
against `eager_attention` by the parity tests in tests/kernels. Packages are imported on
first use; `available(q)` is cheap and never raises, so "auto" skips what cannot run here.

| name            | kernel                                          | documents (varlen)         | "auto" rank |
| --------------- | ----------------------------------------------- | -------------------------- | ----------- |
| flash_attn      | flash-attn 3 (`flash_attn_interface`, Hopper) or 2 | `flash_attn_varlen_func` | 1           |
| flash_attn_cute | flash-attn 4 (`flash_attn.cute`, CuTe DSL, sm90+) | `flash_attn_varlen_func` | 2           |
| sdpa_cudnn      | PyTorch SDPA, cuDNN then flash kernels first   | dense mask (mem-efficient) | 3           |
| xformers        | `xformers.ops.memory_efficient_attention`       | `BlockDiagonalCausalMask`  | 4           |
| sdpa            | PyTorch SDPA, default dispatch (model/)         | dense mask                 | 5           |
| flex            | PyTorch FlexAttention (compiled on CUDA)        | document `BlockMask`       | 6           |
| eager           | reference (model/)                              | dense mask                 | 7           |

With a KV cache (S > T) and documents at once (generation of packed rows, never training) the
varlen backends fall back to `sdpa_attention`, which implements that case exactly.
"""

from __future__ import annotations

import importlib
import math
from functools import lru_cache

import torch

from model.attention import sdpa_attention, select_backend
from model.config import ModelError
from model.kernels.documents import document_block_mask, document_lengths, pack_documents
from model.kernels.optional import import_optional

HALF_DTYPES = (torch.float16, torch.bfloat16)


@lru_cache(maxsize=None)
def _module(name: str):
    """The imported module, or None if it does not import here (missing, or built for another
    torch/CUDA). Cached: `available` is asked on every forward."""
    try:
        return importlib.import_module(name)
    except Exception:  # an extension built for another torch raises OSError/RuntimeError too
        return None


@lru_cache(maxsize=None)
def _capability(device_index: int) -> tuple[int, int]:
    return torch.cuda.get_device_capability(device_index)


def _cuda_half(q: torch.Tensor, min_capability: tuple[int, int] = (8, 0)) -> bool:
    return (q.is_cuda and q.dtype in HALF_DTYPES
            and _capability(q.device.index or 0) >= min_capability)


def _first(result):
    """flash-attn 3/4 return `out` or `(out, lse)` depending on the version."""
    return result[0] if isinstance(result, tuple) else result


def _varlen(fn, q, k, v, document_ids, **kwargs):
    """Run a flash-attn style varlen kernel over the documents of packed rows (T == S)."""
    B, T, H, hd = q.shape
    packed = pack_documents(document_ids)
    out = fn(q.reshape(B * T, H, hd), k.reshape(B * T, k.shape[2], hd),
             v.reshape(B * T, v.shape[2], hd), cu_seqlens_q=packed.cu_seqlens,
             cu_seqlens_k=packed.cu_seqlens, max_seqlen_q=packed.max_seqlen,
             max_seqlen_k=packed.max_seqlen, causal=True, **kwargs)
    return _first(out).view(B, T, H, hd)


# --- flash-attn 2 / 3 ------------------------------------------------------------------------

def _flash_attn_module(q):
    """flash-attn 3 on Hopper when its `flash_attn_interface` is installed, else flash-attn 2."""
    if _capability(q.device.index or 0)[0] == 9 and _module("flash_attn_interface") is not None:
        return _module("flash_attn_interface")
    return _module("flash_attn.flash_attn_interface")


def flash_attn_available(q: torch.Tensor) -> bool:
    return (_cuda_half(q) and q.shape[-1] <= 256 and q.shape[-1] % 8 == 0
            and _flash_attn_module(q) is not None)


def _flash_family_attention(module, q, k, v, document_ids):
    """flash-attn 2/3/4 share one API: `flash_attn_func` (causal bottom-right, GQA native) and
    `flash_attn_varlen_func` over the documents of packed rows (KV-cache prefixes with
    documents fall back to sdpa's dense mask)."""
    if document_ids is None:
        return _first(module.flash_attn_func(q, k, v, causal=True))
    if q.shape[1] != k.shape[1]:
        return sdpa_attention(q, k, v, document_ids)
    return _varlen(module.flash_attn_varlen_func, q, k, v, document_ids)


def flash_attn_attention(q, k, v, document_ids=None):
    """flash-attn 2, or 3 on Hopper (`flash_attn_interface`)."""
    return _flash_family_attention(_flash_attn_module(q), q, k, v, document_ids)


# --- flash-attn 4 (CuTe DSL) -----------------------------------------------------------------

def flash_attn_cute_available(q: torch.Tensor) -> bool:
    return (_cuda_half(q, min_capability=(9, 0)) and q.shape[-1] in (64, 96, 128)
            and _module("flash_attn.cute") is not None)


def flash_attn_cute_attention(q, k, v, document_ids=None):
    """flash-attn 4 (`flash_attn.cute`, Hopper/Blackwell): same conventions as flash-attn 2."""
    return _flash_family_attention(_module("flash_attn.cute"), q, k, v, document_ids)


# --- PyTorch SDPA with cuDNN / flash first ---------------------------------------------------

def sdpa_cudnn_available(q: torch.Tensor) -> bool:
    return _cuda_half(q)


def sdpa_cudnn_attention(q, k, v, document_ids=None):
    """`sdpa_attention` with SDPA's dispatch order set to cuDNN, flash, memory-efficient (the
    default order may prefer flash over cuDNN); masks (documents) go to memory-efficient."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    order = [SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION,
             SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]
    with sdpa_kernel(order, set_priority=True):
        return sdpa_attention(q, k, v, document_ids)


# --- xformers --------------------------------------------------------------------------------

def xformers_available(q: torch.Tensor) -> bool:
    return q.is_cuda and _module("xformers.ops") is not None


def xformers_attention(q, k, v, document_ids=None):
    """xformers memory-efficient attention. GQA through its 5-D [B, M, G, H, K] form with k/v
    broadcast over the heads of a group (a stride-0 expand, no copy)."""
    xops = _module("xformers.ops")
    B, T, H, hd = q.shape
    S, kv_heads = k.shape[1], k.shape[2]
    group = H // kv_heads
    q5 = q.view(B, T, kv_heads, group, hd)
    k5 = k.view(B, S, kv_heads, 1, hd).expand(B, S, kv_heads, group, hd)
    v5 = v.view(B, S, kv_heads, 1, hd).expand(B, S, kv_heads, group, hd)
    if document_ids is None:
        bias = xops.fmha.attn_bias.LowerTriangularFromBottomRightMask()
    elif T != S:
        return sdpa_attention(q, k, v, document_ids)
    else:
        bias = xops.fmha.attn_bias.BlockDiagonalCausalMask.from_seqlens(
            document_lengths(document_ids))
        q5, k5, v5 = (x.reshape(1, B * T, kv_heads, *x.shape[3:]) for x in (q5, k5, v5))
    out = xops.memory_efficient_attention(q5, k5, v5, attn_bias=bias, scale=1 / math.sqrt(hd))
    return out.reshape(B, T, H, hd)


# --- FlexAttention ---------------------------------------------------------------------------

def flex_available(q: torch.Tensor) -> bool:
    # Answered per device/dtype (model.attention caches it), so not by grad mode: on CPU,
    # where FlexAttention has no backward (torch 2.13), the backend itself refuses training.
    return _module("torch.nn.attention.flex_attention") is not None


def _needs_backward(*tensors: torch.Tensor) -> bool:
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


FLEX_CPU_TRAINING = ("attention backend 'flex' has no backward on CPU: train on CUDA, or use "
                     "sdpa (attention_backend)")


@lru_cache(maxsize=None)
def _compiled_flex():
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention, dynamic=False)


def flex_attention_backend(q, k, v, document_ids=None):
    """PyTorch FlexAttention with a causal (and document) `BlockMask`: documents cost no dense
    mask and skip whole blocks. Compiled on CUDA (uncompiled FlexAttention is a slow reference)."""
    from torch.nn.attention.flex_attention import flex_attention

    if not q.is_cuda and _needs_backward(q, k, v):
        raise ModelError(FLEX_CPU_TRAINING)
    block_mask = document_block_mask(document_ids, q.shape[1], k.shape[1], q.device)
    flex = _compiled_flex() if q.is_cuda else flex_attention
    out = flex(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), block_mask=block_mask,
               enable_gqa=q.shape[2] != k.shape[2])
    return out.transpose(1, 2)


# What each backend needs, for `check_backend`'s message: (modules of which one must import,
# requirement). flash-attn-4 installs only `flash_attn.cute`, so `flash_attn` alone proves
# nothing about flash-attn 2.
REQUIREMENTS = {
    "flash_attn": (("flash_attn.flash_attn_interface", "flash_attn_interface"),
                   "CUDA sm80+, fp16/bf16, head_dim <= 256 and a multiple of 8"),
    "flash_attn_cute": (("flash_attn.cute",), "CUDA sm90+, fp16/bf16, head_dim 64, 96 or 128"),
    "sdpa_cudnn": ((), "CUDA sm80+ and fp16/bf16"),
    "xformers": (("xformers.ops",), "CUDA"),
    "flex": (("torch.nn.attention.flex_attention",), "torch >= 2.5"),
}


def check_backend(name: str, q: torch.Tensor) -> None:
    """Raise a one-line error if attention backend `name` cannot run for queries like `q`
    (`q.requires_grad` = for training): `MissingKernelPackage` (naming the extra) if its
    package does not import, else `ModelError` stating what it needs. Backends not listed in
    REQUIREMENTS (auto, sdpa, eager) only need to be known."""
    if name not in REQUIREMENTS:
        select_backend(name, q)  # unknown names raise ModelError listing the known ones
        return
    modules, requirement = REQUIREMENTS[name]
    if modules and all(_module(m) is None for m in modules):
        import_optional(modules[0], f"attention backend {name!r}")
    try:
        select_backend(name, q)
    except ModelError:
        raise ModelError(f"attention backend {name!r} needs {requirement}; got "
                         f"{q.device.type}/{str(q.dtype).removeprefix('torch.')} with head_dim "
                         f"{q.shape[-1]} (attention_backend)") from None
    if name == "flex" and not q.is_cuda and q.requires_grad:
        raise ModelError(FLEX_CPU_TRAINING)

