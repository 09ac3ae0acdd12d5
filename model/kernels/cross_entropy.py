"""Fused LM head + cross-entropy: the loss of `hidden @ weight.T` without the full logits.

The `[tokens, vocab]` logits of a training step are the largest activation of a small model
(tinyllama-1.1b, micro-batch 8 × 2048: 16k × 32000 fp32 = 2.1 GB, plus as much again for their
gradient). Three implementations of one function, selected by name:

- `eager`: `F.cross_entropy((hidden @ weight.T).float(), targets)`; the reference.
- `chunked` (ours; CPU and CUDA): a custom autograd Function that walks the tokens in chunks,
  computes each chunk's logits in float32, its loss and at once its gradients (softmax minus
  one-hot, times 1/n_valid) with respect to the chunk's hidden states and to the weight, then
  drops the chunk's logits. Backward only scales the stored gradients by the incoming scalar.
  Extra memory: one chunk of logits + the gradient buffers `[tokens, dim]` and `[vocab, dim]`
  (the latter float32) instead of two `[tokens, vocab]` tensors. Same FLOPs as eager
  (three matmuls of tokens × dim × vocab). Written here because it must run on CPU too.
- `liger` (CUDA): liger-kernel's `LigerFusedLinearCrossEntropyLoss` (Triton; same idea with
  in-place gradient tricks).

`auto` = `liger` on CUDA when liger-kernel is installed, otherwise `chunked`.
All return the mean loss over targets != `ignore_index` as a float32 scalar.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from model.config import ModelError
from model.kernels.optional import import_optional, is_installed, triton_runs_on

IMPLEMENTATIONS = ("auto", "chunked", "liger", "eager")


MIN_CHUNK_ROWS = 1024  # smaller matmuls waste a CPU's (and a GPU's) throughput


def default_chunk_rows(n_tokens: int, dim: int, vocab_size: int) -> int:
    """Rows per chunk: liger-kernel's rule (one chunk of logits, rows × vocab, about the size of
    the hidden states, tokens × dim, so extra memory scales like the activations and not like
    the vocabulary), but at least `MIN_CHUNK_ROWS` rows (or all tokens, if fewer)."""
    n_chunks = max(1, math.ceil(vocab_size / dim))
    return min(n_tokens, max(MIN_CHUNK_ROWS, math.ceil(n_tokens / n_chunks)))


def _chunk_loss_and_logit_grad(hidden_chunk, weight, target_chunk, ignore_index,
                               inv_n_valid, want_grad):
    """(sum of the chunk's losses, d(mean loss)/d logits [rows, vocab] or None)."""
    logits = (hidden_chunk @ weight.T).float()  # [rows, vocab]
    valid = target_chunk != ignore_index
    safe_target = torch.where(valid, target_chunk, 0)
    lse = torch.logsumexp(logits, dim=-1)
    target_logit = logits.gather(1, safe_target[:, None]).squeeze(1)
    loss_sum = ((lse - target_logit) * valid).sum()
    if not want_grad:
        return loss_sum, None
    # d loss_i / d logits_i = (softmax(logits_i) - onehot(target_i)) / n_valid, zero for ignored
    # rows; computed in place in the logits buffer: a chunk needs one [rows, vocab] tensor.
    grad = logits.sub_(lse[:, None]).exp_()
    grad.scatter_add_(1, safe_target[:, None], torch.full_like(lse[:, None], -1.0))
    grad.mul_((valid * inv_n_valid)[:, None])
    return loss_sum, grad


class ChunkedLinearCrossEntropy(torch.autograd.Function):
    """mean over valid targets of cross_entropy(hidden @ weight.T), gradients computed in forward.

    hidden [N, D], weight [V, D] (same dtype), targets LongTensor [N]. Returns a float32 scalar.
    Call through `linear_cross_entropy`, which handles dtypes, autocast and grad mode.
    One backward per forward (the gradient buffers are scaled in place and handed over).
    """

    @staticmethod
    def forward(ctx, hidden, weight, targets, ignore_index: int, chunk_rows: int,
                compute_grads: bool):
        # forward always runs with grad mode off; `compute_grads` says whether the caller's
        # mode wants gradients (not under torch.no_grad, e.g. validation).
        want_hidden_grad = compute_grads and ctx.needs_input_grad[0]
        want_weight_grad = compute_grads and ctx.needs_input_grad[1]
        n_valid = (targets != ignore_index).sum()
        inv_n_valid = 1.0 / n_valid.clamp(min=1).float()
        loss_sum = torch.zeros((), dtype=torch.float32, device=hidden.device)
        grad_hidden = torch.empty_like(hidden) if want_hidden_grad else None
        grad_weight = None  # float32 accumulator, even for bf16 weights
        for start in range(0, hidden.shape[0], chunk_rows):
            h = hidden[start:start + chunk_rows]
            chunk_loss, grad_logits = _chunk_loss_and_logit_grad(
                h, weight, targets[start:start + chunk_rows], ignore_index, inv_n_valid,
                want_hidden_grad or want_weight_grad)
            loss_sum += chunk_loss
            if grad_logits is None:
                continue
            grad_logits = grad_logits.to(hidden.dtype)
            if want_hidden_grad:
                torch.matmul(grad_logits, weight, out=grad_hidden[start:start + chunk_rows])
            if want_weight_grad:
                chunk_grad = grad_logits.T @ h
                if grad_weight is None:
                    grad_weight = chunk_grad.float()
                else:
                    grad_weight += chunk_grad
        ctx.grad_hidden = grad_hidden
        ctx.grad_weight = None if grad_weight is None else grad_weight.to(weight.dtype)
        # 0/0 = nan when every target is ignored, as F.cross_entropy does.
        return torch.where(n_valid > 0, loss_sum * inv_n_valid, torch.nan)

    @staticmethod
    def backward(ctx, grad_loss):
        grads = []
        for name in ("grad_hidden", "grad_weight"):
            grad = getattr(ctx, name)
            setattr(ctx, name, None)  # handed over: a second backward finds nothing
            if grad is None and ctx.needs_input_grad[len(grads)]:
                raise RuntimeError("ChunkedLinearCrossEntropy: one backward per forward "
                                   "(its gradients were computed once, in forward)")
            grads.append(None if grad is None else grad.mul_(grad_loss.to(grad.dtype)))
        return grads[0], grads[1], None, None, None, None


def _autocast_to_compute_dtype(hidden, weight):
    """Under autocast the matmuls of the head would run in the autocast dtype; do the same
    explicitly (autograd casts the gradients back to the parameters' dtype)."""
    device_type = hidden.device.type
    if torch.is_autocast_enabled(device_type):
        dtype = torch.get_autocast_dtype(device_type)
        return hidden.to(dtype), weight.to(dtype)
    if hidden.dtype != weight.dtype:
        return hidden, weight.to(hidden.dtype)
    return hidden, weight


def resolve_implementation(name: str, device: torch.device | str) -> str:
    """The concrete implementation `name` runs as on `device` ("auto" resolved)."""
    if name not in IMPLEMENTATIONS:
        raise ModelError(f"unknown fused cross-entropy implementation {name!r} "
                         f"(known: {', '.join(IMPLEMENTATIONS)})")
    device = torch.device(device)
    if name == "auto":
        return "liger" if device.type == "cuda" and is_installed("liger_kernel") else "chunked"
    if name == "liger" and not triton_runs_on(device):
        raise ModelError(f"fused cross-entropy 'liger' needs CUDA tensors, got {device.type} "
                         "(use 'chunked')")
    return name


def linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, *,
                         implementation: str = "auto", ignore_index: int = -100,
                         chunk_rows: int | None = None) -> torch.Tensor:
    """Mean cross-entropy of the logits `hidden @ weight.T` against `targets`.

    hidden [..., D] (e.g. `Llama.forward_hidden` output [B, T, D]), weight [V, D] (the LM head),
    targets LongTensor [...] with `ignore_index` for positions without a target.
    Returns a float32 scalar; differentiable with respect to hidden and weight.
    `chunk_rows` (chunked only): tokens per chunk, default `default_chunk_rows`.
    Raises `ModelError` for an unknown implementation or `liger` off CUDA, and
    `MissingKernelPackage` if `liger` is asked for but liger-kernel is not installed.
    """
    impl = resolve_implementation(implementation, hidden.device)
    hidden = hidden.reshape(-1, hidden.shape[-1])
    targets = targets.reshape(-1)
    if hidden.shape[0] != targets.shape[0]:
        raise ModelError(f"hidden has {hidden.shape[0]} tokens but targets has {targets.shape[0]}")
    if impl == "eager":
        return F.cross_entropy((hidden @ weight.T.to(hidden.dtype)).float(), targets,
                               ignore_index=ignore_index)
    hidden, weight = _autocast_to_compute_dtype(hidden, weight)
    if impl == "liger":
        liger = import_optional("liger_kernel.transformers", "fused cross-entropy 'liger'")
        # accum_dtype: the head weight's gradient is summed over chunks in fp32, not in bf16
        loss = liger.LigerFusedLinearCrossEntropyLoss(ignore_index=ignore_index, reduction="mean",
                                                      accum_dtype=torch.float32)(weight, hidden, targets)
        return (loss[0] if isinstance(loss, tuple) else loss).float()
    rows = chunk_rows or default_chunk_rows(hidden.shape[0], hidden.shape[1], weight.shape[0])
    compute_grads = torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad)
    with torch.autocast(hidden.device.type, enabled=False):
        return ChunkedLinearCrossEntropy.apply(hidden, weight, targets, ignore_index, rows,
                                               compute_grads)
