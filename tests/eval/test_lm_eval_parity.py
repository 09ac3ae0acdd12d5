"""Equality with lm-evaluation-harness itself, on its own task configs reading local files."""

from __future__ import annotations

import pytest

from pretrain.eval.benchmarks import load_task
from pretrain.eval.evaluate import evaluate
from tests.eval.benchmark_files import lm_eval_requests, lm_eval_task
from tests.eval.conftest import MAX_SEQ_LEN

pytest.importorskip("lm_eval")

BENCHMARKS = ("hellaswag", "arc_easy", "arc_challenge", "openbookqa", "piqa", "winogrande",
              "boolq", "sciq", "lambada_openai", "lambada_standard")


def test_loaders_build_lm_eval_contexts_and_continuations(public_files, hf_layout_files, tmp_path):
    for name in BENCHMARKS:
        theirs = lm_eval_requests(lm_eval_task(name, hf_layout_files[name], tmp_path / "cache"))
        ours = load_task(name, public_files[name]).items
        assert len(ours) == len(theirs), name
        for item, (_, instances) in zip(ours, theirs):
            assert list(zip(item.contexts, item.continuations)) == [i.arguments for i in instances], name


@pytest.mark.parametrize("bos", [False, True])
def test_loglikelihoods_and_accuracies_equal_lm_eval_hf_backend(bos, hf_export, public_files,
                                                                hf_layout_files, tmp_path):
    import tokenizer as tok
    from lm_eval.models.huggingface import HFLM
    from model.hf import load_pretrained

    lm = HFLM(pretrained=str(hf_export), dtype="float32", device="cpu", batch_size=8,
              add_bos_token=bos)
    assert lm.max_length == MAX_SEQ_LEN
    tasks = [load_task(name, public_files[name]) for name in BENCHMARKS]
    ours = evaluate(load_pretrained(hf_export), tok.load(hf_export), tasks, batch_size=5, bos=bos)
    worst, truncated = 0.0, 0
    for name in BENCHMARKS:
        task = lm_eval_task(name, hf_layout_files[name], tmp_path / "cache")
        docs = lm_eval_requests(task)
        answers = lm.loglikelihood([i for _, instances in docs for i in instances], disable_tqdm=True)
        metrics, outcomes = ours[name]
        truncated += metrics["truncated"]
        at = 0
        for (doc, instances), outcome in zip(docs, outcomes):
            results = answers[at:at + len(instances)]
            at += len(instances)
            for (ll, greedy), our_ll, our_greedy in zip(results, outcome["loglikelihoods"], outcome["greedy"]):
                worst = max(worst, abs(ll - our_ll))
                assert abs(ll - our_ll) <= 1e-4, (name, outcome["index"], ll, our_ll)
                assert greedy == our_greedy, (name, outcome["index"])
            expected = task.process_results(doc, results)
            assert outcome["acc"] == expected["acc"], (name, outcome["index"])
            if "acc_norm" in expected:
                assert outcome["acc_norm"] == expected["acc_norm"], (name, outcome["index"])
    assert truncated > 0  # some items were cut from the left on both sides
    print(f"max |Δ loglikelihood| vs lm-eval (bos={bos}): {worst:.2e}")
