"""DownstreamEval under FSDP2 on two gloo processes: items split across ranks, every rank in
every sharded forward (uneven shares), results equal one process's, training unchanged."""

from __future__ import annotations

import csv
import json

import pytest

from tests.fixtures.pretrain import assert_same_losses, metrics_losses, tiny_config
from tests.pretrain.cli_in_process import slm_in_process

pytestmark = pytest.mark.slow

WORDS = "the river ran past an old mill where quiet children played every summer".split()


def test_sharded_in_loop_eval_equals_one_process_eval_of_its_checkpoint(capsys, pretrain_data, trained_run, tmp_path):
    from tests.fixtures.pretrain import _slm_pretrain

    task = tmp_path / "words.jsonl"  # 11 items: 6 on rank 0, 5 on rank 1, one item per batch
    task.write_text("".join(json.dumps({"query": " ".join(WORDS[i % 7:i % 7 + 3 + i % 4]), "gold": i % 3,
                                        "choices": [" " + WORDS[(i + k) % len(WORDS)] for k in range(3)]}) + "\n"
                            for i in range(11)))
    callback = {"class_path": "pretrain.eval.DownstreamEval",
                "init_args": {"tasks": {"words": str(task)}, "every_n_steps": 2, "batch_size": 3}}
    run_dir = tmp_path / "run"
    _slm_pretrain("--config", tiny_config(run_dir, pretrain_data, trainer={
        "strategy": "fsdp2", "devices": 2, "callbacks": [callback]}))
    assert_same_losses(metrics_losses(run_dir), metrics_losses(trained_run), [1, 2, 3, 4], 1e-5)
    with (run_dir / "eval.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["step"], r["n"]) for r in rows] == [("2", "11"), ("4", "11")]
    proc = slm_in_process(capsys, "eval", "--checkpoint", run_dir / "checkpoints" / "step-000004",
                          "--task", f"words={task}", "--json")
    single = json.loads(proc.stdout)["results"]["words"]
    assert float(rows[1]["acc"]) == pytest.approx(single["acc"], abs=1e-12)
    assert float(rows[1]["acc_norm"]) == pytest.approx(single["acc_norm"], abs=1e-12)
    assert float(rows[1]["bpb"]) == pytest.approx(single["bpb"], rel=1e-5)
