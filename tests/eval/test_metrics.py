"""acc, acc_norm, bpb and their standard errors from per-item outcomes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pretrain.eval.items import GREEDY, MULTIPLE_CHOICE, shared_context_item
from pretrain.eval.metrics import item_outcome, outcome_stats, task_metrics


def _outcomes():
    rng = np.random.default_rng(0)
    out = []
    for i in range(40):
        choices = [" a", " bb", " ccc", " dddd"]
        item = shared_context_item(i, "q", choices, int(rng.integers(4)))
        lls = (-rng.uniform(1, 12, size=4)).tolist()
        out.append(item_outcome(item, [(ll, False) for ll in lls], MULTIPLE_CHOICE,
                                [len(c.encode()) for c in choices], truncated=i % 10 == 0))
    return out


def test_acc_norm_ranks_by_loglikelihood_per_character():
    item = shared_context_item(0, "q", [" ab", " abcdefgh"], 1)
    # per character: -3/3 = -1.0 vs -6/9 = -0.67: the longer choice wins acc_norm, not acc
    outcome = item_outcome(item, [(-3.0, False), (-6.0, False)], MULTIPLE_CHOICE, [3, 9], False)
    assert (outcome["acc"], outcome["acc_norm"]) == (0.0, 1.0)


def test_accuracy_stderr_is_sample_std_over_sqrt_n():
    outcomes = _outcomes()
    metrics = task_metrics(outcome_stats(outcomes), MULTIPLE_CHOICE)
    for key in ("acc", "acc_norm"):
        values = np.array([o[key] for o in outcomes])
        assert metrics[key] == pytest.approx(values.mean())
        assert metrics["stderr"][key] == pytest.approx(values.std(ddof=1) / math.sqrt(len(values)))


def test_bits_per_byte_is_total_nll_over_total_bytes_in_bits():
    outcomes = _outcomes()
    metrics = task_metrics(outcome_stats(outcomes), MULTIPLE_CHOICE)
    nll, n_bytes = sum(o["nll"] for o in outcomes), sum(o["bytes"] for o in outcomes)
    assert metrics["bpb"] == pytest.approx(nll / n_bytes / math.log(2))
    assert 0 < metrics["stderr"]["bpb"] < metrics["bpb"]
    assert metrics["truncated"] == 4 and metrics["n"] == 40


def test_sums_of_parts_give_the_metrics_of_the_whole():
    outcomes = _outcomes()
    parts = [outcome_stats(outcomes[rank::3]) for rank in range(3)]  # three ranks' shares
    added = [sum(values) for values in zip(*parts)]
    got, want = task_metrics(added, MULTIPLE_CHOICE), task_metrics(outcome_stats(outcomes), MULTIPLE_CHOICE)
    assert got.pop("stderr") == pytest.approx(want.pop("stderr"))
    assert got == pytest.approx(want)


def test_greedy_task_accuracy_is_the_greedy_match_with_perplexity():
    item = shared_context_item(0, "ctx", [" word"], 0)
    hits = [item_outcome(item, [(-2.0, greedy)], GREEDY, [5], False) for greedy in (True, False, True, True)]
    metrics = task_metrics(outcome_stats(hits), GREEDY)
    assert metrics["acc"] == 0.75 and metrics["acc_norm"] is None
    assert metrics["perplexity"] == pytest.approx(math.exp(2.0))
