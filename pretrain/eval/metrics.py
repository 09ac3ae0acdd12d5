"""Per-item outcomes → task metrics with standard errors, through sums that add across ranks.

- ``acc``: the gold choice has the highest log-likelihood (first on ties, as numpy's argmax);
  for a GREEDY task (LAMBADA) the continuation is the model's greedy decode.
- ``acc_norm``: the same with each log-likelihood divided by ``Item.norm_chars`` (lm-eval's
  length in characters); none for GREEDY tasks.
- ``bpb``: bits per UTF-8 byte of the gold continuations, Σ nll / (ln 2 · Σ bytes).
- ``perplexity`` (GREEDY tasks, as lm-eval's): exp(mean nll of the continuation).
- standard errors: of a mean, sample std / √n (lm-eval's ``mean_stderr``); of bpb, a ratio of
  sums, the delta method. None below two items.
"""

from __future__ import annotations

import math

from pretrain.eval.items import GREEDY, Item

# The sums a task's metrics are computed from; they add across data-parallel ranks.
STATS = ("n", "acc", "acc_norm", "nll", "bytes", "nll_sq", "bytes_sq", "nll_bytes", "truncated")


def _argmax(values: list[float]) -> int:
    return max(range(len(values)), key=lambda i: (values[i], -i))


def item_outcome(item: Item, scores: list[tuple[float, bool]], kind: str, n_bytes: list[int],
                 truncated: bool) -> dict:
    """One item's record (also a ``--samples`` line): log-likelihoods per choice, gold, and
    its acc / acc_norm / nll / bytes."""
    lls = [ll for ll, _ in scores]
    if kind == GREEDY:
        acc, acc_norm = float(scores[0][1]), None
    else:
        acc = float(_argmax(lls) == item.gold)
        acc_norm = float(_argmax([ll / max(n, 1) for ll, n in zip(lls, item.norm_chars)]) == item.gold)
    return {"index": item.index, "loglikelihoods": lls, "gold": item.gold,
            "greedy": [g for _, g in scores], "acc": acc, "acc_norm": acc_norm,
            "nll": -lls[item.gold], "bytes": n_bytes[item.gold], "truncated": truncated}


def outcome_stats(outcomes: list[dict]) -> list[float]:
    """The STATS sums of some items."""
    sums = dict.fromkeys(STATS, 0.0)
    for o in outcomes:
        nll, n_bytes = o["nll"], o["bytes"]
        sums["n"] += 1
        sums["acc"] += o["acc"]
        sums["acc_norm"] += o["acc_norm"] or 0.0
        sums["nll"] += nll
        sums["bytes"] += n_bytes
        sums["nll_sq"] += nll * nll
        sums["bytes_sq"] += n_bytes * n_bytes
        sums["nll_bytes"] += nll * n_bytes
        sums["truncated"] += bool(o["truncated"])
    return [sums[k] for k in STATS]


def _mean_stderr(total: float, n: float) -> float | None:
    """Standard error of the mean of n values in {0, 1} summing to ``total``."""
    if n < 2:
        return None
    p = total / n
    return math.sqrt(max(p * (1 - p), 0.0) / (n - 1))


def task_metrics(stats: list[float], kind: str) -> dict:
    """``{acc, acc_norm, bpb, stderr: {acc, acc_norm, bpb}, n, truncated[, perplexity]}``."""
    s = dict(zip(STATS, stats))
    n = s["n"]
    bpb = s["nll"] / (math.log(2) * s["bytes"]) if s["bytes"] else None
    bpb_stderr = None
    if bpb is not None and n >= 2:
        ratio = s["nll"] / s["bytes"]
        spread = s["nll_sq"] - 2 * ratio * s["nll_bytes"] + ratio * ratio * s["bytes_sq"]
        bpb_stderr = math.sqrt(max(spread, 0.0) / (n * (n - 1))) / (s["bytes"] / n) / math.log(2)
    greedy = kind == GREEDY
    result = {
        "acc": s["acc"] / n,
        "acc_norm": None if greedy else s["acc_norm"] / n,
        "bpb": bpb,
        "stderr": {"acc": _mean_stderr(s["acc"], n),
                   "acc_norm": None if greedy else _mean_stderr(s["acc_norm"], n),
                   "bpb": bpb_stderr},
        "n": int(n),
        "truncated": int(s["truncated"]),
    }
    if greedy:
        result["perplexity"] = math.exp(min(s["nll"] / n, 700.0))
    return result
