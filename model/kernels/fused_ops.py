"""Fused RMSNorm, rotary embedding and SwiGLU activation, swapped into a built `Llama`.

The seam: `apply_fused_ops(model, name)` changes the class of the model's `RMSNorm`,
`Attention` and `FeedForward` modules to subclasses that differ only in the kernel their
`forward` calls (the trick FSDP2's `fully_shard` itself uses). Parameters, state-dict keys,
initialisation and checkpoints are untouched, and `model/llama.py` keeps the plain-PyTorch
math as the reference. Apply it before `torch.compile` and FSDP (as `pretrain/training/parallelize.py`
applies activation checkpointing), like liger-kernel's `apply_liger_kernel_to_llama`.

Names (`FUSED_OPS`):
- `none`: the eager math of `model/llama.py` (the reference; default).
- `liger`: liger-kernel's Triton kernels for all three (CUDA): `liger_rms_norm` ("llama"
  casting, as our RMSNorm), `liger_rope` (rotate_half layout, q and k in one kernel,
  on copies: it works in place), `liger_swiglu` (silu(a)·b in one pass, recomputed in
  backward).
- `torch`: `torch.nn.functional.rms_norm` with the weight folded in (one ATen op, with a
  fused CUDA kernel in recent torch; runs on CPU too, which is how the seam is tested without
  a GPU); rotary and SwiGLU stay eager (torch.compile fuses those element-wise ops itself).
- `auto`: `liger` on CUDA when liger-kernel is installed, else `torch` on CUDA, else `none`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from model.config import ModelError
from model.kernels.optional import import_optional, is_installed, triton_runs_on
from model.llama import Attention, FeedForward, RMSNorm, apply_rotary

FUSED_OPS = ("none", "auto", "liger", "torch")


@dataclass(frozen=True)
class FusedOps:
    """Kernels with the contracts of the eager math in model/llama.py; None = keep eager.

    rms_norm(x [..., D], weight [D], eps) -> [..., D]      (x normalised in float32, cast, × weight)
    rotary(q [B,T,H,hd], k [B,T,KV,hd], cos, sin [T, hd] float32) -> (q, k)   rotate_half layout
    silu_mul(gate, up) -> silu(gate) * up
    """

    name: str
    rms_norm: Callable | None = None
    rotary: Callable | None = None
    silu_mul: Callable | None = None


@lru_cache(maxsize=None)
def liger_ops() -> FusedOps:
    """liger-kernel's kernels, bound once (no import machinery inside a compiled forward)."""
    functional = import_optional("liger_kernel.transformers.functional", "fused ops 'liger'")

    def rms_norm(x, weight, eps):
        return functional.liger_rms_norm(x, weight, eps)

    def rotary(q, k, cos, sin):
        # liger_rope takes [B, heads, T, hd] and cos/sin [1, T, hd] (the transposes are views)
        # and rotates its inputs in place. It gets copies: the projections' outputs may be held
        # elsewhere, e.g. cached by selective activation checkpointing, where rotating them in
        # place silently corrupts the recomputed attention and every gradient below it.
        q, k = functional.liger_rope(q.transpose(1, 2).clone(), k.transpose(1, 2).clone(),
                                     cos[None], sin[None])
        return q.transpose(1, 2), k.transpose(1, 2)

    def silu_mul(gate, up):
        return functional.liger_swiglu(gate, up)

    return FusedOps("liger", rms_norm, rotary, silu_mul)


def torch_rms_norm(x, weight, eps):
    """One `F.rms_norm` call with the weight; differs from the eager order (normalise, cast,
    then × weight) only in where a bf16 rounding happens."""
    return F.rms_norm(x, (x.shape[-1],), weight.to(x.dtype), eps=eps)


def resolve_fused_ops(name: str, device: torch.device | str) -> FusedOps:
    """The kernels `name` means on `device`. Raises `ModelError` for an unknown name or `liger`
    off CUDA, `MissingKernelPackage` for `liger` without liger-kernel."""
    if name not in FUSED_OPS:
        raise ModelError(f"unknown fused ops {name!r} (known: {', '.join(FUSED_OPS)})")
    cuda = torch.device(device).type == "cuda"
    if name == "auto":
        name = ("liger" if cuda and is_installed("liger_kernel") else "torch" if cuda else "none")
    if name == "liger":
        if not triton_runs_on(device):
            raise ModelError(f"fused ops 'liger' need CUDA, the model is on {device} "
                             "(use 'none' or 'torch')")
        return liger_ops()
    if name == "torch":
        return FusedOps("torch", rms_norm=torch_rms_norm)
    return FusedOps("none")


def eager_rotary(q, k, cos, sin):
    return apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)


def eager_silu_mul(gate, up):
    return F.silu(gate) * up


# The fused subclasses: each overrides the one method that calls its kernel. The kernel is a
# class attribute, filled in per `FusedOps` by `_fused_subclass`.
class FusedRMSNorm(RMSNorm):
    fused_rms_norm: Callable = staticmethod(torch_rms_norm)

    def forward(self, x):
        return self.fused_rms_norm(x, self.weight, self.eps)


class FusedRotaryAttention(Attention):
    fused_rotary: Callable = staticmethod(eager_rotary)

    def rotate(self, q, k, rope):
        return self.fused_rotary(q, k, *rope)


class FusedFeedForward(FeedForward):
    fused_silu_mul: Callable = staticmethod(eager_silu_mul)

    def forward(self, x):
        return self.w2(self.fused_silu_mul(self.w1(x), self.w3(x)))


@lru_cache(maxsize=None)
def _fused_subclass(base: type, attribute: str, kernel: Callable, ops_name: str) -> type:
    return type(f"{base.__name__}_{ops_name}", (base,), {attribute: staticmethod(kernel)})


def apply_fused_ops(model: nn.Module, ops: str | FusedOps = "auto",
                    device: torch.device | str | None = None) -> FusedOps:
    """Swap fused kernels into every RMSNorm / Attention / FeedForward of `model` in place.

    `ops`: a name of `FUSED_OPS`, or a `FusedOps` of your own kernels (same contracts).
    `device`: where the model will run (default: where its parameters are now; pass it for a
    model still on the meta device). Returns the resolved `FusedOps`. Apply once, before
    torch.compile and FSDP; modules already swapped are left alone.
    """
    if isinstance(ops, str):
        if device is None:
            device = next(model.parameters()).device
        ops = resolve_fused_ops(ops, device)
    swaps = [(RMSNorm, FusedRMSNorm, "fused_rms_norm", ops.rms_norm),
             (Attention, FusedRotaryAttention, "fused_rotary", ops.rotary),
             (FeedForward, FusedFeedForward, "fused_silu_mul", ops.silu_mul)]
    for base, fused_base, attribute, kernel in swaps:
        if kernel is None:
            continue
        fused_class = _fused_subclass(fused_base, attribute, kernel, ops.name)
        for module in model.modules():
            if type(module) is base:  # not twice, and never a subclass we do not know
                module.__class__ = fused_class
    return ops
