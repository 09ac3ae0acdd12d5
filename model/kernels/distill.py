"""Knowledge-distillation loss of an LM head without the full logits, teacher online or cached.

    loss = mean over valid tokens of (1 − α)·CE(student, label) + α·T²·KL(q_T ‖ p_T)

with p_T = softmax(student logits / T), q_T the teacher's distribution at temperature T
(forward KL, as in Hinton et al. 2015; the T² keeps the KL's gradient on the scale of the CE's
when T changes). Valid tokens are those whose label is not `ignore_index`; the KL is averaged
over the same tokens, so `ce`, `kl` and `loss` are means over one set of positions.

Like `model.kernels.cross_entropy`'s `chunked`, each function walks the tokens in chunks,
computes a chunk's student logits (and, online, the teacher's) in float32, its loss and at once
its gradient with respect to the chunk's hidden states and the head weight, and drops the
chunk's logits: neither [tokens, vocab] tensor exists. Extra memory: about three chunks of
logits plus the gradient buffers [tokens, dim] and [vocab, dim]. Backward scales the stored
gradients by the incoming scalar.

- `linear_distill_loss`: online; the teacher's hidden states and head weight are inputs (frozen:
  no gradient reaches them).
- `topk_distill_loss`: cached; the teacher is its top-K log-probabilities at T = 1 and their ids.
  The distributions are compared on K + 1 events, the K ids and "any other id": the teacher's
  other-mass is 1 − Σ top-K, the student's its own mass outside the K ids. That is the exact KL
  between both distributions coarsened to those events (a lower bound of the full KL, equal to
  it when the student's tail is shaped like the teacher's). We chose it over renormalising the
  top-K because renormalising tells the student that the teacher gives the tail zero mass, which
  pushes the student's tail towards zero and makes it over-confident where the teacher is not.
  Temperature: q_T ∝ q₁^(1/T), exact for the K ids (log q₁ / T); the tail's tempered mass needs
  its unseen shape, and we take the maximum-entropy one: the other-mass r spread evenly over the
  V − K other ids, i.e. weight (V − K)·(r / (V − K))^(1/T). At T = 1 this is exactly r.

All functions return `(loss, ce, kl)`: `loss` a float32 scalar (float64 for float64 inputs)
differentiable with respect to `hidden` and `weight`; `ce`, `kl` the same, detached, for
logging. Every token ignored:
all three are nan (as `F.cross_entropy`). One backward per forward.
"""

from __future__ import annotations

import math

import torch

from model.config import ModelError
from model.kernels.cross_entropy import _autocast_to_compute_dtype, default_chunk_rows


def _wide(logits: torch.Tensor) -> torch.Tensor:
    """Logits in float32, or float64 if they are (the float64 path is exact, for tests)."""
    return logits.to(torch.promote_types(logits.dtype, torch.float32))


def _check_distill_args(alpha: float, temperature: float) -> None:
    if not 0.0 <= alpha <= 1.0:
        raise ModelError(f"distillation alpha must be in [0, 1], got {alpha}")
    if not temperature > 0.0:
        raise ModelError(f"distillation temperature must be > 0, got {temperature}")


def _student_logits_and_ce(hidden_chunk, weight, label_chunk, ignore_index):
    """(float32 logits [rows, V], logsumexp [rows], per-row CE [rows], valid [rows], safe labels)."""
    logits = _wide(hidden_chunk @ weight.T)
    valid = label_chunk != ignore_index
    safe_label = torch.where(valid, label_chunk, 0)
    lse = torch.logsumexp(logits, dim=-1)
    ce_rows = lse - logits.gather(1, safe_label[:, None]).squeeze(1)
    return logits, lse, ce_rows, valid, safe_label


def _rowdot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Σ_v a[r, v]·b[r, v] per row, through a batched matmul (no [rows, V] product tensor)."""
    return torch.bmm(a[:, None, :], b[:, :, None]).view(-1)


def _finish_grad(student_grad, logits, lse, safe_label, valid, inv_n_valid, alpha):
    """In `logits`: d(mean loss)/d logits = (1 − α)(softmax − onehot) + `student_grad`
    (the KL part, already scaled by α·T), times valid / n_valid; returns it."""
    grad = logits.sub_(lse[:, None]).exp_().mul_(1.0 - alpha)
    grad.add_(student_grad)
    grad.scatter_add_(1, safe_label[:, None], torch.full_like(lse[:, None], alpha - 1.0))
    return grad.mul_((valid * inv_n_valid)[:, None])


def _online_chunk(h, weight, labels, th, teacher_weight, ignore_index, inv_n_valid, alpha,
                  temperature, want_grad):
    """(Σ CE, Σ KL, d mean loss / d logits or None) for one chunk, teacher logits computed here."""
    logits, lse, ce_rows, valid, safe_label = _student_logits_and_ce(h, weight, labels,
                                                                     ignore_index)
    log_q = _wide(th @ teacher_weight.T).div_(temperature)
    log_q.sub_(torch.logsumexp(log_q, dim=-1, keepdim=True))
    q = log_q.exp()
    lse_t = torch.logsumexp(logits / temperature, dim=-1) if temperature != 1.0 else lse
    # KL(q ‖ p_T) = Σ q log q − Σ q (s/T − lse_T), with Σ q = 1
    kl_rows = _rowdot(q, log_q) - _rowdot(q, logits) / temperature + lse_t
    ce_sum, kl_sum = (ce_rows * valid).sum(), (kl_rows * valid).sum()
    if not want_grad:
        return ce_sum, kl_sum, None
    # d(T²·KL)/d logits = T·(p_T − q); the buffer of log q becomes α·T·(p_T − q)
    kl_grad = log_q.copy_(logits).div_(temperature).sub_(lse_t[:, None]).exp_().sub_(q)
    kl_grad.mul_(alpha * temperature)
    del q
    return ce_sum, kl_sum, _finish_grad(kl_grad, logits, lse, safe_label, valid, inv_n_valid,
                                        alpha)


def _topk_teacher(logprobs, vocab_size, temperature, dtype):
    """Teacher log-probabilities at temperature T on the K + 1 events (module docstring):
    (log q_K [rows, K], log q_other [rows]), float32; log q_other is -inf for no other-mass."""
    logprobs = logprobs.to(dtype)
    # stored in 16 bits, the top-K may sum to a hair above 1: clamp the other-mass at 0
    other = (1.0 - logprobs.exp().sum(-1)).clamp_(min=0.0)
    k = logprobs.shape[-1]
    others = vocab_size - k
    weights = logprobs / temperature
    if others > 0:
        log_other = other.log()
        log_others = math.log(others)
        other_weight = log_others + (log_other - log_others) / temperature
    else:
        other_weight = torch.full_like(other, -math.inf)
    norm = torch.logsumexp(torch.cat([weights, other_weight[:, None]], dim=-1), dim=-1)
    return weights - norm[:, None], other_weight - norm


def _topk_chunk(h, weight, labels, logprobs, ids, ignore_index, inv_n_valid, alpha,
                temperature, want_grad):
    """(Σ CE, Σ KL, d mean loss / d logits or None) for one chunk against cached top-K."""
    logits, lse, ce_rows, valid, safe_label = _student_logits_and_ce(h, weight, labels,
                                                                     ignore_index)
    log_q, log_q_other = _topk_teacher(logprobs, logits.shape[1], temperature, logits.dtype)
    student_t = logits / temperature  # a copy: becomes the other-ids buffer below
    lse_t = torch.logsumexp(student_t, dim=-1)
    log_p = student_t.gather(1, ids) - lse_t[:, None]  # student log p_T at the K ids
    student_t.scatter_(1, ids, -math.inf)  # the other ids only
    lse_other = torch.logsumexp(student_t, dim=-1)
    log_p_other = lse_other - lse_t
    q, q_other = log_q.exp(), log_q_other.exp()
    # 0·log 0 = 0: an id or an other-bucket to which the teacher gives no mass adds nothing
    kl_rows = torch.where(q > 0, q * (log_q - log_p), 0.0).sum(-1) + torch.where(
        q_other > 0, q_other * (log_q_other - log_p_other), 0.0)
    ce_sum, kl_sum = (ce_rows * valid).sum(), (kl_rows * valid).sum()
    if not want_grad:
        return ce_sum, kl_sum, None
    # d KL / d (s/T): p_j − q_j at the K ids; p_j − q_other·p_j / P_other at the others,
    # written as two exponentials of logits below their logsumexp (neither can overflow).
    if ids.shape[1] == logits.shape[1]:  # K = V: no other ids (and -inf - -inf = nan)
        share = torch.zeros_like(student_t)
    else:
        share = (student_t - lse_other[:, None]).exp_().mul_(q_other[:, None])
    kl_grad = student_t.sub_(lse_t[:, None]).exp_().sub_(share)  # zero at the K ids
    del share
    kl_grad.scatter_(1, ids, log_p.exp() - q)
    kl_grad.mul_(alpha * temperature)
    return ce_sum, kl_sum, _finish_grad(kl_grad, logits, lse, safe_label, valid, inv_n_valid,
                                        alpha)


class _ChunkedDistill(torch.autograd.Function):
    """Chunk loop shared by both losses; `chunk_fn(h, weight, labels, *teacher rows, ...)`.

    Inputs: hidden [N, D], weight [V, D], labels [N], teacher tensors whose first dim is N
    (sliced per chunk) or not (passed whole). Outputs (loss, ce, kl); ce and kl are not
    differentiable. Gradients are computed in forward, for hidden and weight only.
    """

    @staticmethod
    def forward(ctx, hidden, weight, labels, teacher_rows, teacher_whole, chunk_fn,
                ignore_index, alpha, temperature, chunk_rows, compute_grads):
        want_hidden_grad = compute_grads and ctx.needs_input_grad[0]
        want_weight_grad = compute_grads and ctx.needs_input_grad[1]
        n_valid = (labels != ignore_index).sum()
        wide = torch.promote_types(hidden.dtype, torch.float32)
        inv_n_valid = 1.0 / n_valid.clamp(min=1).to(wide)
        ce_sum = torch.zeros((), dtype=wide, device=hidden.device)
        kl_sum = torch.zeros((), dtype=wide, device=hidden.device)
        grad_hidden = torch.empty_like(hidden) if want_hidden_grad else None
        grad_weight = None  # float32 (or float64) accumulator, even for bf16 weights
        for start in range(0, hidden.shape[0], chunk_rows):
            rows = slice(start, start + chunk_rows)
            h = hidden[rows]
            chunk_ce, chunk_kl, grad_logits = chunk_fn(
                h, weight, labels[rows], *(t[rows] for t in teacher_rows), *teacher_whole,
                ignore_index, inv_n_valid, alpha, temperature,
                want_hidden_grad or want_weight_grad)
            ce_sum += chunk_ce
            kl_sum += chunk_kl
            if grad_logits is None:
                continue
            grad_logits = grad_logits.to(hidden.dtype)
            if want_hidden_grad:
                torch.matmul(grad_logits, weight, out=grad_hidden[rows])
            if want_weight_grad:
                chunk_grad = grad_logits.T @ h
                grad_weight = chunk_grad.to(wide) if grad_weight is None else grad_weight.add_(
                    chunk_grad)
        ctx.grad_hidden = grad_hidden
        ctx.grad_weight = None if grad_weight is None else grad_weight.to(weight.dtype)
        nan = torch.tensor(torch.nan, dtype=wide, device=hidden.device)
        ce = torch.where(n_valid > 0, ce_sum * inv_n_valid, nan)
        kl = torch.where(n_valid > 0, kl_sum * inv_n_valid, nan)
        loss = (1.0 - alpha) * ce + alpha * temperature ** 2 * kl
        ctx.mark_non_differentiable(ce, kl)
        return loss, ce, kl

    @staticmethod
    def backward(ctx, grad_loss, _grad_ce, _grad_kl):
        grads = []
        for name in ("grad_hidden", "grad_weight"):
            grad = getattr(ctx, name)
            setattr(ctx, name, None)  # handed over: a second backward finds nothing
            if grad is None and ctx.needs_input_grad[len(grads)]:
                raise RuntimeError("distillation loss: one backward per forward "
                                   "(its gradients were computed once, in forward)")
            grads.append(None if grad is None else grad.mul_(grad_loss.to(grad.dtype)))
        return (grads[0], grads[1]) + (None,) * 9


def _flatten(hidden, labels, where):
    hidden = hidden.reshape(-1, hidden.shape[-1])
    labels = labels.reshape(-1)
    if hidden.shape[0] != labels.shape[0]:
        raise ModelError(f"hidden has {hidden.shape[0]} tokens but labels has "
                         f"{labels.shape[0]} ({where})")
    return hidden, labels


def _run(hidden, weight, labels, teacher_rows, teacher_whole, chunk_fn, ignore_index, alpha,
         temperature, chunk_rows):
    hidden, weight = _autocast_to_compute_dtype(hidden, weight)
    rows = chunk_rows or default_chunk_rows(hidden.shape[0], hidden.shape[1], weight.shape[0])
    compute_grads = torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad)
    with torch.autocast(hidden.device.type, enabled=False):
        return _ChunkedDistill.apply(hidden, weight, labels, teacher_rows, teacher_whole,
                                     chunk_fn, ignore_index, float(alpha), float(temperature),
                                     rows, compute_grads)


def linear_distill_loss(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor,
                        teacher_hidden: torch.Tensor, teacher_weight: torch.Tensor, *,
                        alpha: float, temperature: float = 1.0, ignore_index: int = -100,
                        chunk_size: int | None = None):
    """Online distillation loss of the student head `hidden @ weight.T` against the teacher
    head `teacher_hidden @ teacher_weight.T` (module docstring for the formula).

    hidden [..., D] (the student's `forward_hidden`), weight [V, D]; labels LongTensor [...]
    (`ignore_index` where there is no target); teacher_hidden [..., Dt] with the same leading
    shape, teacher_weight [V, Dt] (same V: one vocabulary). Teacher tensors get no gradient.
    Under autocast both heads run in the autocast dtype. `chunk_size`: tokens per chunk,
    default `default_chunk_rows`. Returns (loss, ce, kl), float32 scalars; ModelError for
    mismatched shapes or α ∉ [0, 1], T ≤ 0.
    """
    _check_distill_args(alpha, temperature)
    hidden, labels = _flatten(hidden, labels, "linear_distill_loss")
    teacher_hidden = teacher_hidden.detach().reshape(-1, teacher_hidden.shape[-1])
    teacher_weight = teacher_weight.detach()
    if teacher_hidden.shape[0] != hidden.shape[0] or teacher_weight.shape[0] != weight.shape[0]:
        raise ModelError(f"teacher hidden {tuple(teacher_hidden.shape)} / head "
                         f"{tuple(teacher_weight.shape)} do not match the student's "
                         f"{tuple(hidden.shape)} / {tuple(weight.shape)} (linear_distill_loss)")
    teacher_hidden, teacher_weight = _autocast_to_compute_dtype(teacher_hidden, teacher_weight)
    return _run(hidden, weight, labels, (teacher_hidden,), (teacher_weight,), _online_chunk,
                ignore_index, alpha, temperature, chunk_size)


def topk_distill_loss(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor,
                      teacher_logprobs: torch.Tensor, teacher_ids: torch.Tensor, *,
                      alpha: float, temperature: float = 1.0, ignore_index: int = -100,
                      chunk_size: int | None = None):
    """Cached distillation loss against the teacher's top-K log-probabilities (module docstring:
    the K + 1 events and how T applies to log-probabilities stored at T = 1).

    hidden [..., D], weight [V, D], labels LongTensor [...]; teacher_logprobs [..., K] (any float
    dtype, natural log, T = 1) and teacher_ids [..., K] (any integer dtype, distinct ids < V per
    token), leading shape as labels'. Returns (loss, ce, kl), float32 scalars; ModelError for
    mismatched shapes or α ∉ [0, 1], T ≤ 0.
    """
    _check_distill_args(alpha, temperature)
    hidden, labels = _flatten(hidden, labels, "topk_distill_loss")
    k = teacher_ids.shape[-1]
    logprobs = teacher_logprobs.detach().reshape(-1, k)
    ids = teacher_ids.reshape(-1, k).long()
    if logprobs.shape != ids.shape or ids.shape[0] != hidden.shape[0]:
        raise ModelError(f"teacher log-probs {tuple(teacher_logprobs.shape)} and ids "
                         f"{tuple(teacher_ids.shape)} do not match {hidden.shape[0]} tokens "
                         "(topk_distill_loss)")
    if k > weight.shape[0]:
        raise ModelError(f"top-K of {k} exceeds the vocabulary of {weight.shape[0]} "
                         "(topk_distill_loss)")
    return _run(hidden, weight, labels, (logprobs, ids), (), _topk_chunk, ignore_index, alpha,
                temperature, chunk_size)
