"""Equality with lm-evaluation-harness itself, on its own task configs reading local files."""

from __future__ import annotations

import pytest

from pretrain.eval.benchmarks import load_task
from pretrain.eval.bos import resolve_bos
from pretrain.eval.evaluate import evaluate
from tests.eval.benchmark_files import lm_eval_requests, lm_eval_task
from tests.eval.conftest import MAX_SEQ_LEN, no_bos_tokenizer

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


def _lm_eval(hf_dir, bos_flag):
    """lm-eval's HFLM on ``hf_dir``: its defaults when ``bos_flag`` is None (no add_bos_token)."""
    from lm_eval.models.huggingface import HFLM

    flags = {} if bos_flag is None else {"add_bos_token": bos_flag}
    return HFLM(pretrained=str(hf_dir), dtype="float32", device="cpu", batch_size=8, **flags)


# (export, flag given to both tools, BOS expected): each tool's defaults on our export (BOS),
# the same flag to both, and the defaults on an export whose tokenizer files put no BOS.
CASES = {"defaults": ("ours", None, True), "--no-bos": ("ours", False, False),
         "defaults, tokenizer without BOS": ("no-bos", None, False)}


@pytest.mark.parametrize("case", list(CASES))
def test_loglikelihoods_and_accuracies_equal_lm_eval_hf_backend(case, hf_export, public_files,
                                                                hf_layout_files, tmp_path):
    import tokenizer as tok
    from model.hf import load_pretrained

    export, bos_flag, expected_bos = CASES[case]
    hf_dir = hf_export if export == "ours" else no_bos_tokenizer(hf_export, tmp_path / "hf-no-bos")
    lm = _lm_eval(hf_dir, bos_flag)
    assert lm.max_length == MAX_SEQ_LEN
    tokenizer = tok.load(hf_dir)
    bos = resolve_bos(bos_flag, hf_dir, tokenizer.bos_id)
    assert bos.bos is expected_bos and bos.source == ("flag" if bos_flag is not None else "tokenizer")
    tasks = [load_task(name, public_files[name]) for name in BENCHMARKS]
    ours = evaluate(load_pretrained(hf_dir), tokenizer, tasks, batch_size=5, bos=bos.bos)
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
    print(f"max |Δ loglikelihood| vs lm-eval ({case}): {worst:.2e}")


def test_edge_contexts_score_as_lm_eval_defaults(hf_export):
    """An empty context, one starting with BOS's text "<s>", trailing spaces: lm-eval's defaults."""
    import tokenizer as tok
    from lm_eval.api.instance import Instance
    from model.hf import load_pretrained

    from pretrain.eval.items import Item
    from pretrain.eval.requests import item_requests
    from pretrain.eval.scorer import score_groups

    pairs = [("", " the river ran"), ("<s> the river", " ran past"), ("the river  ", "ran past"),
             ("<s>", " mill"), ("the <s> river", " ran")]
    tokenizer = tok.load(hf_export)
    bos = resolve_bos(None, hf_export, tokenizer.bos_id).bos
    model = load_pretrained(hf_export)
    groups = [item_requests(Item(i, (c,), (k,), 0, (1,)), tokenizer, MAX_SEQ_LEN, bos)
              for i, (c, k) in enumerate(pairs)]
    ours = [ll for group in score_groups(model, groups, batch_size=2) for ll, _ in group]
    theirs = [ll for ll, _ in _lm_eval(hf_export, None).loglikelihood(
        [Instance("loglikelihood", {}, pair, 0) for pair in pairs], disable_tqdm=True)]
    assert ours == pytest.approx(theirs, abs=1e-4)


@pytest.mark.parametrize("flags, expected", [((), (True, "tokenizer")), (("--no-bos",), (False, "flag"))])
def test_compare_lm_eval_scores_both_tools_with_the_same_bos(capsys, flags, expected, hf_export, public_files):
    import json

    from tests.pretrain.cli_in_process import slm_in_process

    proc = slm_in_process(capsys, "eval", "--checkpoint", hf_export, "--task",
                          f"arc_easy={public_files['arc_easy']}", "--compare-lm-eval", "1", "--json", *flags)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert (report["bos"], report["bos_source"]) == expected
    assert report["items"] == 3 and report["max_abs_diff"] <= 1e-4
