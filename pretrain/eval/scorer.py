"""Batched log-likelihood scoring with each item's shared prefix computed once.

lm-evaluation-harness runs every (context, choice) pair through the model in full. Here the
requests of one item form a group: the tokens their windows have in common (the whole context
for ordinary multiple choice, the sentence up to the blank for WinoGrande) go through the model
once, and only the rest of each request is run, attending to the shared keys/values. Positions
are the same as lm-eval's (every window starts at position 0), so the log-likelihoods agree
with it to float rounding. Written here rather than taken from a library because the sharing
is the point (several times fewer tokens on multiple choice) and equality with lm-eval is the
contract.

Per batch of groups: one prefix pass over ``s`` tokens per group (``s`` = the shortest shared
prefix in the batch; groups are sorted by it so little is recomputed) and one suffix pass per
request from position ``s``, through the model's own ``forward(..., cache=, start_pos=)``.
"""

from __future__ import annotations

from typing import Callable

import torch

from pretrain.eval.requests import Request


class _SharedPrefixCache:
    """What the model's attention calls as ``cache.update(layer, start_pos, k, v)``: while
    ``filling`` it keeps the prefix's keys/values; afterwards it prepends them to the suffix's
    without storing (each suffix attends to its group's prefix only)."""

    def __init__(self, k: dict | None = None, v: dict | None = None):
        self.filling = k is None
        self.k, self.v = k or {}, v or {}

    def update(self, layer_id: int, start_pos: int, k: torch.Tensor, v: torch.Tensor):
        if self.filling:
            self.k[layer_id], self.v[layer_id] = k, v
            return k, v
        return torch.cat((self.k[layer_id], k), dim=1), torch.cat((self.v[layer_id], v), dim=1)

    def select_rows(self, rows: torch.Tensor) -> "_SharedPrefixCache":
        return _SharedPrefixCache({i: t[rows] for i, t in self.k.items()},
                                  {i: t[rows] for i, t in self.v.items()})


def shared_prefix_length(group: list[Request]) -> int:
    """Tokens every request of the group starts with, short of the first position whose
    logits are needed (the one before each request's first continuation token)."""
    limit = min(len(r.tokens) - r.n_continuation - 1 for r in group)
    first = group[0].tokens
    length = 0
    while length < limit and all(r.tokens[length] == first[length] for r in group[1:]):
        length += 1
    return length


def plan_batches(groups: list[list[Request]], batch_size: int) -> list[list[int]]:
    """Group indices per batch: groups sorted by shared prefix (longest first, then longest
    request), packed until a batch holds ``batch_size`` requests (at least one group)."""
    order = sorted(range(len(groups)), key=lambda g: (-shared_prefix_length(groups[g]),
                                                      -max(len(r.tokens) for r in groups[g])))
    batches, current, rows = [], [], 0
    for g in order:
        if current and rows + len(groups[g]) > batch_size:
            batches.append(current)
            current, rows = [], 0
        current.append(g)
        rows += len(groups[g])
    if current:
        batches.append(current)
    return batches


def _device(model: torch.nn.Module) -> torch.device:
    return model.tok_embeddings.weight.device


@torch.no_grad()
def score_batch(model: torch.nn.Module, groups: list[list[Request]],
                uniform_calls: bool = False) -> list[list[tuple[float, bool]]]:
    """(log-likelihood in nats, continuation is the greedy decode) per request of each group.
    ``uniform_calls``: always exactly two forward calls (FSDP2 ranks must call alike)."""
    device = _device(model)
    start = min(shared_prefix_length(g) for g in groups)
    rows = [r for g in groups for r in g]
    cache = None
    if start > 0:
        prefix = torch.tensor([g[0].tokens[:start] for g in groups], device=device)
        cache = _SharedPrefixCache()
        # Hidden states only: the prefix's logits are never needed (forward_hidden is also an
        # FSDP2 forward method of the root, see pretrain.training.parallelize).
        model.forward_hidden(prefix, cache=cache, start_pos=0)
        cache.filling = False
        group_of_row = torch.tensor([i for i, g in enumerate(groups) for _ in g], device=device)
        cache = cache.select_rows(group_of_row)
    elif uniform_calls:
        _idle_prefix_pass(model)
    width = max(len(r.tokens) - 1 - start for r in rows)
    inputs = torch.zeros(len(rows), width, dtype=torch.long)
    row_index, col_index, targets, owner = [], [], [], []
    for j, r in enumerate(rows):
        body = r.tokens[start:-1]
        inputs[j, :len(body)] = torch.tensor(body)
        first = len(r.tokens) - 1 - r.n_continuation - start  # logits predicting the 1st target
        row_index += [j] * r.n_continuation
        col_index += range(first, first + r.n_continuation)
        targets += r.tokens[-r.n_continuation:]
        owner += [j] * r.n_continuation
    inputs = inputs.to(device)
    logits = model(inputs, cache=cache, start_pos=start) if cache is not None else model(inputs)
    picked = logits[torch.tensor(row_index, device=device), torch.tensor(col_index, device=device)]
    log_probs = picked.float().log_softmax(dim=-1)
    targets_t = torch.tensor(targets, device=device)
    token_ll = log_probs.gather(1, targets_t[:, None]).squeeze(1)
    misses = (log_probs.argmax(dim=-1) != targets_t).float()
    owner_t = torch.tensor(owner, device=device)
    ll = torch.zeros(len(rows), device=device, dtype=torch.float64).index_add_(0, owner_t, token_ll.double())
    miss = torch.zeros(len(rows), device=device).index_add_(0, owner_t, misses)
    flat = list(zip(ll.tolist(), (miss == 0).tolist()))
    out, at = [], 0
    for g in groups:
        out.append(flat[at:at + len(g)])
        at += len(g)
    return out


def _one_token(model: torch.nn.Module) -> torch.Tensor:
    return torch.zeros(1, 1, dtype=torch.long, device=_device(model))


def _idle_prefix_pass(model: torch.nn.Module) -> None:
    model.forward_hidden(_one_token(model))


@torch.no_grad()
def run_idle_batch(model: torch.nn.Module) -> None:
    """The forward calls of one ``score_batch(..., uniform_calls=True)`` on one token, output
    discarded: a rank with no batch left still takes part in FSDP2's per-forward collectives."""
    _idle_prefix_pass(model)
    model(_one_token(model))


def score_groups(model: torch.nn.Module, groups: list[list[Request]], batch_size: int = 32,
                 progress: Callable[[int], None] | None = None) -> list[list[tuple[float, bool]]]:
    """Score every request of every group (results in the groups' order); ``progress(n)`` is
    called with the number of requests done after each batch."""
    results: list = [None] * len(groups)
    for batch in plan_batches(groups, batch_size):
        for g, scores in zip(batch, score_batch(model, [groups[g] for g in batch])):
            results[g] = scores
        if progress is not None:
            progress(sum(len(groups[g]) for g in batch))
    return results
