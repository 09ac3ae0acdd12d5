"""The training step: one optimizer update from one rank's micro-batches. ``slm pretrain``
(``PretrainModule.training_step``) and ``slm bench`` both run exactly this.

Loss: token-mean cross-entropy per micro-batch, divided by the number of micro-batches, with
gradients averaged over data-parallel ranks. Every micro-batch has the same number of tokens
(packed fixed-length sequences, no padding), so this mean of means is exactly the token mean over
the global batch: k accumulated micro-batches equal one k-times larger batch. Gradients are
reduced across ranks only on the last micro-batch (``gradient_sync``). The update is skipped as
a whole, on every rank, when the rank-averaged loss or the global gradient norm is not finite.
"""

from __future__ import annotations

import math
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Callable, Iterable

import torch
from torch import nn

from model.kernels.cross_entropy import linear_cross_entropy

MicroBatch = dict[str, torch.Tensor]


@dataclass
class StepResult:
    loss: torch.Tensor  # mean over the step's tokens on all ranks (a 0-d float32 tensor)
    grad_norm: torch.Tensor  # global L2 norm before clipping
    updated: bool  # False: non-finite loss or gradient norm, no update
    # |gradient of the first micro-batch (on all ranks)|², when asked (for the noise scale)
    first_micro_grad_sq: torch.Tensor | None = None


def micro_batches(batch: dict[str, torch.Tensor]) -> list[MicroBatch]:
    """A step batch of ``[A, B, ...]`` tensors → its A micro-batches of ``[B, ...]``."""
    count = batch["labels"].shape[0]
    return [{key: value[index] for key, value in batch.items()} for index in range(count)]


def causal_lm_loss(model: nn.Module, batch: MicroBatch, fused_ce: str) -> torch.Tensor:
    """Mean next-token cross-entropy (nats/token, fp32) of ``batch``: the final hidden states
    and the LM head weight go to ``linear_cross_entropy`` (``fused_ce``), which by default never
    materialises the ``[tokens, vocab]`` logits. ``document_ids``, when present, confine
    attention to each packed document."""
    # ``forward_hidden`` is registered as an FSDP2 forward method (pretrain.training.parallelize),
    # so under FSDP2 it all-gathers like ``forward``; the root group (embeddings, final norm,
    # head) is not resharded after forward, so ``output.weight`` is the unsharded parameter here
    # and its gradient flows back to it like through ``model.output``.
    hidden = model.forward_hidden(batch["input_ids"], document_ids=batch.get("document_ids"))
    return linear_cross_entropy(hidden, model.output.weight, batch["labels"], implementation=fused_ce)


def distill_loss(model: nn.Module, batch: MicroBatch, distill, teacher: nn.Module | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(loss, ce, kl)`` of a micro-batch under knowledge distillation (``pretrain.distill``):
    loss = (1 − α)·CE(labels) + α·T²·KL(teacher_T ‖ student_T), token means, chunk by chunk so
    neither model's ``[tokens, vocab]`` logits exist at once (``model.kernels.distill``). The
    teacher is ``teacher`` run here without gradients (online), or the batch's cached top-K
    ``teacher_logprobs`` / ``teacher_ids``. ``ce`` and ``kl`` are detached, for logging."""
    from model.kernels.distill import linear_distill_loss, topk_distill_loss

    document_ids = batch.get("document_ids")
    hidden = model.forward_hidden(batch["input_ids"], document_ids=document_ids)
    if teacher is None:
        return topk_distill_loss(hidden, model.output.weight, batch["labels"], batch["teacher_logprobs"],
                                 batch["teacher_ids"], alpha=distill.alpha, temperature=distill.temperature)
    with torch.no_grad():
        teacher_hidden = teacher.forward_hidden(batch["input_ids"], document_ids=document_ids)
    return linear_distill_loss(hidden, model.output.weight, batch["labels"], teacher_hidden,
                               teacher.output.weight, alpha=distill.alpha, temperature=distill.temperature)


def fsdp_gradient_sync(model: nn.Module, fallback: Callable[[bool], AbstractContextManager] | None = None):
    """``gradient_sync(last)`` for ``training_step``: an FSDP2 root reduce-scatters only when
    ``last``; otherwise ``fallback`` (e.g. DDP's ``block_backward_sync``) or nothing."""
    def gradient_sync(last: bool) -> AbstractContextManager:
        if hasattr(model, "set_requires_gradient_sync"):  # an FSDP2-sharded root module
            model.set_requires_gradient_sync(last)
            return nullcontext()
        return fallback(last) if fallback is not None else nullcontext()
    return gradient_sync


def training_step(model: nn.Module, optimizer, batches: Iterable[MicroBatch],
                  loss_fn: Callable[[MicroBatch], torch.Tensor], *, grad_clip: float,
                  backward: Callable[[torch.Tensor], None] = torch.Tensor.backward,
                  gradient_sync: Callable[[bool], AbstractContextManager] | None = None,
                  reduce_mean: Callable[[torch.Tensor], torch.Tensor] = lambda t: t,
                  measure_first_micro_batch: bool = False) -> StepResult:
    """Forward and backward every micro-batch, then clip and step ``optimizer`` (gradients are
    zeroed either way). ``reduce_mean`` averages the loss over data-parallel ranks.

    ``measure_first_micro_batch`` (needs ≥ 2 micro-batches): also reduce the gradients after
    the first micro-batch and measure their norm, the small batch of the gradient noise scale
    (``pretrain.training.noise_scale``); the update is the same (a reduced part, equal on every
    rank, is unchanged by the final reduction)."""
    from pretrain.training.parallelize import clip_grad_norm, grad_norm

    batches = list(batches)
    gradient_sync = gradient_sync or fsdp_gradient_sync(model)
    measure = measure_first_micro_batch and len(batches) > 1
    total = first_micro_grad_sq = None
    for index, batch in enumerate(batches):
        with gradient_sync(index == len(batches) - 1 or (measure and index == 0)):
            loss = loss_fn(batch)
            backward(loss / len(batches))
        if measure and index == 0:
            first_micro_grad_sq = (grad_norm(model).float() * len(batches)) ** 2
        total = loss.detach().float() if total is None else total + loss.detach().float()
    step_loss = reduce_mean(total / len(batches))
    norm = clip_grad_norm(model, grad_clip or math.inf)
    updated = bool(torch.isfinite(step_loss) and torch.isfinite(norm))
    if updated:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return StepResult(step_loss, norm, updated, first_micro_grad_sq)
