"""DownstreamEval in a real `slm pretrain` run: training unchanged, results equal `slm eval`'s,
resumable."""

from __future__ import annotations

import csv
import json
import shutil

import pytest

from tests.fixtures.pretrain import assert_same_losses, metrics_losses, tiny_config
from tests.pretrain.cli_in_process import slm_in_process

WORDS = "the river ran past an old mill where quiet children played every summer".split()


def _eval_rows(run_dir):
    with (run_dir / "eval.csv").open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def task_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("callback-task") / "words.jsonl"
    lines = [json.dumps({"query": " ".join(WORDS[i % 7:i % 7 + 4]), "gold": i % 3,
                         "choices": [" " + WORDS[(i + k) % len(WORDS)] for k in range(3)]})
             for i in range(10)]
    path.write_text("\n".join(lines) + "\n")
    return path


def _callback(task_file):
    return [{"class_path": "pretrain.eval.DownstreamEval",
             "init_args": {"tasks": {"words": str(task_file)}, "every_n_steps": 2, "batch_size": 4}}]


@pytest.fixture(scope="module")
def callback_run(pretrain_data, task_file, tmp_path_factory):
    """trained_run's recipe (4 steps, checkpoints at 2 and 4) plus DownstreamEval every 2 steps."""
    from tests.fixtures.pretrain import _slm_pretrain

    run_dir = tmp_path_factory.mktemp("callback") / "run"
    _slm_pretrain("--config", tiny_config(run_dir, pretrain_data, trainer={"callbacks": _callback(task_file)}))
    return run_dir


def test_training_losses_are_the_same_with_the_callback(callback_run, trained_run):
    assert_same_losses(metrics_losses(callback_run), metrics_losses(trained_run), [1, 2, 3, 4], tolerance=0.0)


def test_in_loop_results_equal_slm_eval_on_the_checkpoint_of_that_step(capsys, callback_run, task_file):
    rows = _eval_rows(callback_run)
    assert [(r["step"], r["tokens"], r["task"], r["source"]) for r in rows] == [
        ("2", "512", "words", "in-loop"), ("4", "1024", "words", "in-loop")]
    proc = slm_in_process(capsys, "eval", "--checkpoint", callback_run / "checkpoints" / "step-000004",
                          "--task", f"words={task_file}", "--json")
    standalone = json.loads(proc.stdout)["results"]["words"]
    assert float(rows[1]["acc"]) == pytest.approx(standalone["acc"], abs=1e-12)
    assert float(rows[1]["bpb"]) == pytest.approx(standalone["bpb"], rel=1e-6)
    assert (callback_run / "eval.png").is_file()


def test_in_loop_rows_record_bos_as_the_tokenizer_says(callback_run):
    assert [(r["bos"], r["bos_source"]) for r in _eval_rows(callback_run)] == [("true", "tokenizer")] * 2


def test_in_loop_metrics_reach_tensorboard(callback_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(callback_run / "tensorboard")).Reload()
    assert [e.step for e in events.Scalars("eval/words/acc")] == [2, 4]
    assert [e.step for e in events.Scalars("eval/wall_s")] == [2, 4]


def test_resumed_run_goes_on_evaluating_and_keeps_earlier_rows(callback_run, pretrain_data, task_file, tmp_path):
    from tests.fixtures.pretrain import _slm_pretrain

    run_dir = shutil.copytree(callback_run, tmp_path / "run", symlinks=True)
    before = _eval_rows(run_dir)
    config = tiny_config(run_dir, pretrain_data, trainer={"callbacks": _callback(task_file), "max_steps": 6})
    _slm_pretrain("--config", config, "--ckpt_path", "last")
    rows = _eval_rows(run_dir)
    assert [r["step"] for r in rows] == ["2", "4", "6"]
    assert rows[:2] == before
