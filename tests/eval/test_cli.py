"""`slm eval` on a checkpoint, a run directory and an HF directory; bad input."""

from __future__ import annotations

import csv
import json
import shutil

import pytest

from tests.eval.conftest import edit_json, no_bos_tokenizer
from tests.pretrain.cli_in_process import slm_in_process
from tests.user_errors import assert_user_error

WORDS = "the river ran past an old mill where quiet children played every summer".split()


@pytest.fixture
def generic_task(tmp_path):
    lines = []
    for i in range(12):
        query = " ".join(WORDS[(i + k) % len(WORDS)] for k in range(3 + i % 5))
        choices = [" " + WORDS[(i * 3 + k) % len(WORDS)] for k in range(4)]
        lines.append(json.dumps({"query": query, "choices": choices, "gold": i % 4}))
    path = tmp_path / "tasks" / "next_word.jsonl"
    path.parent.mkdir()
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def run_copy(trained_run, tmp_path):
    return shutil.copytree(trained_run, tmp_path / "run", symlinks=True)


def _csv_rows(run_dir):
    with (run_dir / "eval.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def _json(proc):
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_run_dir_evaluates_every_checkpoint_in_token_order_into_eval_csv_and_png(capsys, run_copy, generic_task):
    report = _json(slm_in_process(capsys, "eval", "--checkpoint", run_copy, "--task", f"words={generic_task}", "--json"))
    assert [c["step"] for c in report["checkpoints"]] == [2, 4]
    assert report["step"] == 4 and report["results"]["words"]["n"] == 12
    rows = (run_copy / "eval.csv").read_text().splitlines()
    assert rows[0].startswith("step,tokens,task,n,acc,")
    assert [r.split(",")[:3] for r in rows[1:]] == [["2", "512", "words"], ["4", "1024", "words"]]
    assert (run_copy / "eval.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_run_dir_rerun_skips_checkpoints_already_in_eval_csv(capsys, run_copy, generic_task):
    first = _json(slm_in_process(capsys, "eval", "--checkpoint", run_copy, "--task", f"words={generic_task}", "--json"))
    before = (run_copy / "eval.csv").read_bytes()
    again = _json(slm_in_process(capsys, "eval", "--checkpoint", run_copy, "--task", f"words={generic_task}", "--json"))
    assert [c["skipped"] for c in again["checkpoints"]] == [True, True]
    assert again["results"] == first["results"]
    assert (run_copy / "eval.csv").read_bytes() == before


def test_rerun_with_another_bos_evaluates_again_and_eval_csv_records_it(capsys, run_copy, generic_task):
    task = f"words={generic_task}"
    first = _json(slm_in_process(capsys, "eval", "--checkpoint", run_copy, "--task", task, "--json"))
    assert [(c["bos"], c["bos_source"]) for c in first["checkpoints"]] == [(True, "tokenizer")] * 2
    assert [(r["bos"], r["bos_source"]) for r in _csv_rows(run_copy)] == [("true", "tokenizer")] * 2
    again = _json(slm_in_process(capsys, "eval", "--checkpoint", run_copy, "--task", task, "--no-bos", "--json"))
    assert [c["skipped"] for c in again["checkpoints"]] == [False, False]
    assert [(r["step"], r["bos"], r["bos_source"]) for r in _csv_rows(run_copy)] == [
        ("2", "false", "flag"), ("4", "false", "flag")]
    assert again["results"]["words"]["bpb"] != first["results"]["words"]["bpb"]


def _samples(capsys, hf_dir, task, out, *flags):
    report = _json(slm_in_process(capsys, "eval", "--checkpoint", hf_dir, "--task", f"words={task}",
                                  "--samples", out, "--json", *flags))
    lines = [json.loads(line) for line in (out / "words.jsonl").read_text().splitlines()]
    return report, [ll for line in lines for ll in line["loglikelihoods"]]


def test_default_bos_follows_the_tokenizer_and_flags_override_it(capsys, hf_export, generic_task, tmp_path):
    default, default_lls = _samples(capsys, hf_export, generic_task, tmp_path / "default")
    with_bos, bos_lls = _samples(capsys, hf_export, generic_task, tmp_path / "bos", "--bos")
    without, no_bos_lls = _samples(capsys, hf_export, generic_task, tmp_path / "no-bos", "--no-bos")
    assert (default["bos"], default["bos_source"]) == (True, "tokenizer")
    assert (with_bos["bos"], with_bos["bos_source"]) == (True, "flag")
    assert (without["bos"], without["bos_source"]) == (False, "flag")
    assert default_lls == bos_lls
    assert max(abs(a - b) for a, b in zip(default_lls, no_bos_lls)) > 0.01


def test_export_whose_tokenizer_adds_no_bos_is_scored_without_it_by_default(capsys, hf_export, generic_task, tmp_path):
    plain = no_bos_tokenizer(hf_export, tmp_path / "hf-no-bos")
    default, default_lls = _samples(capsys, plain, generic_task, tmp_path / "default")
    _, no_bos_lls = _samples(capsys, hf_export, generic_task, tmp_path / "no-bos", "--no-bos")
    assert (default["bos"], default["bos_source"]) == (False, "tokenizer")
    assert default_lls == no_bos_lls


def test_tokenizer_files_that_contradict_each_other_are_one_error_line(capsys, hf_export, generic_task, tmp_path):
    hf_dir = shutil.copytree(hf_export, tmp_path / "hf")
    edit_json(hf_dir / "tokenizer_config.json", lambda c: c.update(add_bos_token=False))
    proc = slm_in_process(capsys, "eval", "--checkpoint", hf_dir, "--task", f"words={generic_task}")
    assert_user_error(proc, "add_bos_token=false but tokenizer.json's post-processor adds BOS", str(hf_dir))


def test_checkpoint_and_its_hf_export_score_the_same(capsys, trained_run, generic_task, tmp_path):
    checkpoint = trained_run / "checkpoints" / "step-000004"
    assert slm_in_process(capsys, "export", "--checkpoint", checkpoint, "--output", tmp_path / "hf").returncode == 0
    for source, out in ((checkpoint, "a"), (tmp_path / "hf", "b")):
        proc = slm_in_process(capsys, "eval", "--checkpoint", source, "--task", f"words={generic_task}",
                              "--samples", tmp_path / out, "--json")
        assert proc.returncode == 0, proc.stderr
    ours = [json.loads(line) for line in (tmp_path / "a" / "words.jsonl").read_text().splitlines()]
    hf = [json.loads(line) for line in (tmp_path / "b" / "words.jsonl").read_text().splitlines()]
    assert [o["index"] for o in ours] == list(range(12))
    for a, b in zip(ours, hf):
        assert a["gold"] == b["gold"] and a["loglikelihoods"] == pytest.approx(b["loglikelihoods"], abs=1e-5)


def test_samples_lines_agree_with_the_reported_accuracy(capsys, hf_export, public_files, tmp_path):
    report = _json(slm_in_process(capsys, "eval", "--checkpoint", hf_export, "--task",
                                  f"hellaswag={public_files['hellaswag']}", "--samples", tmp_path / "s", "--json"))
    lines = [json.loads(line) for line in (tmp_path / "s" / "hellaswag.jsonl").read_text().splitlines()]
    assert [(s["index"], s["gold"], len(s["loglikelihoods"])) for s in lines] == [(0, 3, 4), (1, 0, 4), (2, 1, 4)]
    result = report["results"]["hellaswag"]
    assert result["acc"] == pytest.approx(sum(s["acc"] for s in lines) / 3)
    assert set(result) >= {"acc", "acc_norm", "bpb", "stderr", "n"}


def test_malformed_task_line_is_one_error_and_nothing_is_written(capsys, hf_export, tmp_path):
    task = tmp_path / "t.jsonl"
    task.write_text(json.dumps({"query": "q", "choices": ["a"], "gold": 0}) + "\n"
                    + json.dumps({"query": "q", "choices": ["a", "b"], "gold": 5}) + "\n")
    proc = slm_in_process(capsys, "eval", "--checkpoint", hf_export, "--task", f"mine={task}",
                          "--samples", tmp_path / "samples")
    assert_user_error(proc, "gold 5 out of range", f"{task}:2")
    assert not (tmp_path / "samples").exists()


@pytest.mark.parametrize("args, fragment", [
    (["--task", "no-equals-sign"], "a task is NAME=FILE"),
    (["--task", "x=/nonexistent/file.jsonl"], "task file not found"),
    (["--task", "x={task}", "--limit", "0"], "--limit must be at least 1"),
])
def test_bad_flags_are_one_error_line(capsys, hf_export, generic_task, args, fragment):
    args = [a.format(task=generic_task) for a in args]
    assert_user_error(slm_in_process(capsys, "eval", "--checkpoint", hf_export, *args), fragment)


def test_run_dir_without_checkpoints_is_an_error(capsys, tmp_path, generic_task):
    (tmp_path / "empty-run" / "checkpoints").mkdir(parents=True)
    proc = slm_in_process(capsys, "eval", "--checkpoint", tmp_path / "empty-run", "--task", f"w={generic_task}")
    assert_user_error(proc, "no complete checkpoint")
