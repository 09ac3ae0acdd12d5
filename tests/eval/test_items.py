"""Task files: the generic format, the benchmarks' two layouts, and malformed input."""

from __future__ import annotations

import json

import pytest

from pretrain.errors import PretrainError
from pretrain.eval.benchmarks import load_task
from tests.eval.benchmark_files import write_hf_layout


def _write(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_generic_choice_is_appended_to_query_as_is(tmp_path):
    path = _write(tmp_path / "t.jsonl", [json.dumps({"query": "2 + 2 =", "choices": [" 4", "five"], "gold": 0})])
    (item,) = load_task("arith", path).items
    assert item.contexts == ("2 + 2 =", "2 + 2 =")
    assert item.continuations == (" 4", "five")
    assert item.norm_chars == (2, 4)


def test_item_index_is_its_zero_based_line_number_blank_lines_counted(tmp_path):
    line = json.dumps({"query": "q", "choices": ["a"], "gold": 0})
    task = load_task("t", _write(tmp_path / "t.jsonl", [line, "", line]))
    assert [item.index for item in task.items] == [0, 2]


def test_limit_reads_the_first_items_only(tmp_path):
    lines = [json.dumps({"query": f"q{i}", "choices": ["a", "b"], "gold": 1}) for i in range(5)]
    task = load_task("t", _write(tmp_path / "t.jsonl", lines), limit=2)
    assert [item.contexts[0] for item in task.items] == ["q0", "q1"]


@pytest.mark.parametrize("name", ["arc_easy", "openbookqa", "piqa", "boolq", "sciq", "hellaswag"])
def test_public_release_and_hf_layouts_give_the_same_items(name, public_files, tmp_path):
    hf = write_hf_layout(tmp_path)[name]
    assert load_task(name, public_files[name]).items == load_task(name, hf).items


def test_hellaswag_preprocessing_matches_lm_eval_rules(public_files):
    item = load_task("hellaswag", public_files["hellaswag"]).items[1]
    # " [title]" → ". ", other brackets dropped, double spaces collapsed, ctx_b capitalised
    assert item.contexts[0] == "Home and Garden: How to grow tomatoes. Choose a sunny spot. Tomatoes need light. Water them"
    assert item.continuations[0] == " every morning before the heat."
    assert item.norm_chars[0] == len("every morning before the heat.")


def test_winogrande_scores_the_shared_rest_after_each_filled_blank(public_files):
    item = load_task("winogrande", public_files["winogrande"]).items[1]
    assert item.contexts == ("The trophy doesn't fit into the brown suitcase because the trophy",
                             "The trophy doesn't fit into the brown suitcase because the suitcase")
    assert item.continuations == (" is too large.",) * 2
    assert item.gold == 0


def test_piqa_without_labels_file_or_key_is_an_error(tmp_path):
    path = _write(tmp_path / "valid.jsonl", [json.dumps({"goal": "g", "sol1": "a", "sol2": "b"})])
    with pytest.raises(PretrainError, match=r"no label.*valid.jsonl:1"):
        load_task("piqa", path)


@pytest.mark.parametrize("line, message", [
    ("{not json", "not JSON"),
    (json.dumps({"query": "q", "gold": 0}), "missing key 'choices'"),
    (json.dumps({"query": "q", "choices": ["a", "b"], "gold": 2}), "gold 2 out of range for 2 choices"),
    (json.dumps({"query": "q", "choices": [], "gold": 0}), "no choices"),
    (json.dumps({"query": "q", "choices": ["a"], "gold": True}), "'gold' must be int"),
])
def test_malformed_line_is_an_error_naming_file_and_line(tmp_path, line, message):
    good = json.dumps({"query": "q", "choices": ["a", "b"], "gold": 0})
    path = _write(tmp_path / "t.jsonl", [good, line])
    with pytest.raises(PretrainError) as error:
        load_task("mine", path)
    assert message in str(error.value) and f"({path}:2)" in str(error.value)
