"""Items/s of ``slm eval`` and of lm-evaluation-harness's ``hf`` backend on the same HF export
and the same (context, continuation) requests, measured alternately in one process so that
a busy machine slows both alike (``slm eval --compare-lm-eval``)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch

from pretrain.errors import PretrainError
from pretrain.eval.bos import resolve_bos
from pretrain.eval.evaluate import evaluate_prepared, prepare_task
from pretrain.eval.items import Task

log = logging.getLogger(__name__)


def compare_with_lm_eval(hf_dir: Path, tasks: list[Task], batch_size: int, rounds: int = 3,
                         bos: bool | None = None) -> dict:
    """{"ours": items/s, "lm_eval": items/s, "ratio": ours/lm_eval, "items", "rounds",
    "max_abs_diff": largest |Δ log-likelihood| between the two, "bos", "bos_source"}: each round
    times a full pass of ours then of lm-eval over every item; the rates are total items / total
    seconds. ``bos`` None: each tool's default (lm-eval's add_bos_token unset, ours from the
    tokenizer's files), else both are told."""
    try:
        from lm_eval.api.instance import Instance
        from lm_eval.models.huggingface import HFLM
    except ImportError:
        raise PretrainError("--compare-lm-eval needs lm-evaluation-harness: "
                            "pip install 'slm-pretrain[eval]'") from None
    import tokenizer as tok
    from model.hf import load_pretrained

    model, tokenizer = load_pretrained(hf_dir), tok.load(hf_dir)
    ours_bos = resolve_bos(bos, hf_dir, tokenizer.bos_id)
    lm = HFLM(pretrained=str(hf_dir), dtype="float32", device="cpu", batch_size=batch_size,
              **({} if bos is None else {"add_bos_token": bos}))
    prepared = [prepare_task(task, tokenizer, model.config.max_seq_len, ours_bos.bos) for task in tasks]
    requests = [Instance("loglikelihood", {}, (c, k), i)
                for task in tasks for item in task.items for i, (c, k) in enumerate(zip(item.contexts, item.continuations))]
    n_items = sum(len(task.items) for task in tasks)
    spent = {"ours": 0.0, "lm_eval": 0.0}
    ours_ll: list[float] = []
    theirs_ll: list[float] = []
    for round_index in range(rounds):
        started = time.perf_counter()
        ours_ll = [ll for p in prepared for o in evaluate_prepared(model, p, batch_size)[1]
                   for ll in o["loglikelihoods"]]
        spent["ours"] += time.perf_counter() - started
        started = time.perf_counter()
        with torch.no_grad():
            theirs_ll = [ll for ll, _ in lm.loglikelihood(requests, disable_tqdm=True)]
        spent["lm_eval"] += time.perf_counter() - started
        log.info("round %d: ours %.2f s, lm-eval %.2f s", round_index + 1,
                 spent["ours"] / (round_index + 1), spent["lm_eval"] / (round_index + 1))
    ours_rate, theirs_rate = n_items * rounds / spent["ours"], n_items * rounds / spent["lm_eval"]
    return {"items": n_items, "requests": len(requests), "rounds": rounds, "batch_size": batch_size,
            "ours_items_per_s": ours_rate, "lm_eval_items_per_s": theirs_rate,
            "ratio": ours_rate / theirs_rate, "bos": ours_bos.bos, "bos_source": ours_bos.source,
            "max_abs_diff": max(abs(a - b) for a, b in zip(ours_ll, theirs_ll))}
