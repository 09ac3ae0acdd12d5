"""Prefix-shared batched scoring equals a full forward per request, with fewer tokens."""

from __future__ import annotations

import os
import random

import pytest
import torch

import tokenizer as tok
from pretrain.eval.items import Item, shared_context_item
from pretrain.eval.requests import item_requests
from pretrain.eval.scorer import score_groups
from tests.eval.conftest import tiny_model

WORDS = "the river ran past an old mill where quiet children played every summer near bright gardens".split()


def _text(rng, low, high):
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(low, high)))


@pytest.fixture(scope="module")
def groups(trained_tokenizer):
    """Requests of shared-context items (some cut from the left) and WinoGrande-style items."""
    rng, tokenizer, groups = random.Random(1), tok.load(trained_tokenizer), []
    for i in range(24):
        if i % 4 == 3:
            stem = _text(rng, 2, 8)
            item = Item(i, (stem + " mill", stem + " river"), (" ran on",) * 2, 0, (4, 5))
        else:
            item = shared_context_item(i, _text(rng, 1, 40), [" " + _text(rng, 1, 6) for _ in range(4)], 0)
        groups.append(item_requests(item, tokenizer, max_seq_len=48))
    assert any(r.truncated for g in groups for r in g)
    return groups


def _full_forward(model, request):
    log_probs = model(torch.tensor([request.tokens[:-1]]))[0].log_softmax(-1)
    n = request.n_continuation
    targets = torch.tensor(request.tokens[-n:])
    picked = log_probs[-n:]
    return picked.gather(1, targets[:, None]).sum().item(), bool((picked.argmax(-1) == targets).all())


@pytest.mark.parametrize("batch_size", [1, 7, 100])
def test_shared_prefix_scores_equal_a_full_forward_per_request(groups, batch_size):
    model = tiny_model(max_seq_len=48)
    scores = score_groups(model, groups, batch_size=batch_size)
    with torch.no_grad():
        for group, group_scores in zip(groups, scores):
            for request, (ll, greedy) in zip(group, group_scores):
                want_ll, want_greedy = _full_forward(model, request)
                assert ll == pytest.approx(want_ll, abs=2e-5)
                assert greedy == want_greedy


def test_shared_context_runs_through_the_model_once_per_item(groups):
    model = tiny_model(max_seq_len=48)
    seen = []
    model.tok_embeddings.register_forward_hook(lambda m, args, out: seen.append(args[0].numel()))
    score_groups(model, groups, batch_size=1)  # one item per batch: no padding in the count
    expected = 0
    for group in groups:
        # the tokens all windows start with, short of the first position whose logits count
        shared = len(os.path.commonprefix([r.tokens for r in group]))
        shared = min([shared] + [len(r.tokens) - r.n_continuation - 1 for r in group])
        expected += shared + len(group) * max(len(r.tokens) - 1 - shared for r in group)  # padded rows
    per_request = sum(len(r.tokens) - 1 for g in groups for r in g)
    assert sum(seen) == expected < 0.9 * per_request  # lm-eval runs per_request tokens
