"""`slm sweep run` / `collect` orchestration, with a fake trainer that runs in milliseconds."""

import csv
import sys
from pathlib import Path

import pytest

from tests.user_errors import assert_user_error

FAKE_TRAINER = Path(__file__).with_name("fake_trainer.py")


@pytest.fixture
def planned(slm, tmp_path, sweep_recipe):
    recipe = sweep_recipe(tmp_path / "ot.yaml", kind="overtrain", multipliers=[20, 80])
    slm("sweep", "plan", "--config", recipe, "--output", tmp_path / "s", check=True)
    calls = tmp_path / "calls.txt"
    command = f"{sys.executable} {FAKE_TRAINER} {calls}"
    return tmp_path / "s", calls, command


def calls_of(path):
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


def test_run_trains_every_run_once_and_skips_finished_ones(slm, planned):
    sweep, calls, command = planned
    slm("sweep", "run", sweep, "--train-command", command, check=True)
    first = calls_of(calls)
    assert sorted(c[0] for c in first) == ["L1-M20", "L1-M80", "L2-M20", "L2-M80"]
    assert all(c[1] == "last" for c in first)  # always resumable
    proc = slm("sweep", "run", sweep, "--train-command", command, check=True)
    assert calls_of(calls) == first  # nothing retrained
    assert proc.stdout.count("finished already, skipped") == 4


def test_an_interrupted_run_fails_the_sweep_and_resumes_on_the_next_call(slm, planned):
    sweep, calls, command = planned
    proc = slm("sweep", "run", sweep, "--train-command", command, env={"FAKE_TRAIN_CRASH": "L2-M20"})
    assert_user_error(proc, "1 run(s) failed: L2-M20")
    slm("sweep", "run", sweep, "--train-command", command, env={"FAKE_TRAIN_CRASH": "L2-M20"},
        check=True)
    resumed = [c for c in calls_of(calls) if c[0] == "L2-M20"]
    assert len(resumed) == 2 and int(resumed[1][2]) > 1  # second call continued mid-run
    assert len(calls_of(calls)) == 5  # the three others were not retrained


def test_collect_writes_final_losses_and_loss_curves(slm, planned):
    sweep, calls, command = planned
    slm("sweep", "run", sweep, "--train-command", command, check=True)
    proc = slm("sweep", "collect", sweep, check=True)
    assert "4 runs" in proc.stdout
    with (sweep / "plan.csv").open() as handle:
        plan = {r["run"]: r for r in csv.DictReader(handle)}
    with (sweep / "results.csv").open() as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames[:7] == ["run", "params", "non_embedding_params", "tokens",
                                         "loss", "flops", "tokens_per_param"]
        results = list(reader)
    assert len(results) == 4
    for row in results:
        planned_row = plan[row["run"]]
        assert int(row["params"]) == int(planned_row["params"])  # all parameters
        assert int(row["non_embedding_params"]) == int(planned_row["non_embedding_params"])
        assert float(row["flops"]) == 6 * int(row["params"]) * int(row["tokens"])
        assert int(row["tokens"]) == int(planned_row["tokens"])
        metrics = list(csv.DictReader((sweep / "runs" / row["run"] / "metrics.csv").open()))
        assert float(row["loss"]) == float(metrics[-1]["val_loss"])  # the last step's
    with (sweep / "curves.csv").open() as handle:
        curves = list(csv.DictReader(handle))
    assert len(curves) > len(results) and {c["run"] for c in curves} == set(plan)


def test_collect_with_allow_missing_takes_the_finished_runs(slm, planned):
    sweep, calls, command = planned
    slm("sweep", "run", sweep, "--train-command", command, "--runs", "L1-M20,L2-M80", check=True)
    proc = slm("sweep", "collect", sweep, "--allow-missing", check=True)
    assert "2 runs" in proc.stdout


def test_unknown_run_name(slm, planned):
    sweep, calls, command = planned
    assert_user_error(slm("sweep", "run", sweep, "--runs", "nope"), "unknown run 'nope'")


def test_collect_writes_the_noise_scale_the_runs_logged(slm, tmp_path, sweep_recipe):
    recipe = sweep_recipe(tmp_path / "b.yaml", kind="batch", models=[{"n_layers": 1}],
                          tokens=51200, batch_sizes=[512, 1024], micro_batch_size=4,
                          base={"model": {"noise_scale": True}})
    sweep = tmp_path / "s"
    slm("sweep", "plan", "--config", recipe, "--output", sweep, check=True)
    command = f"{sys.executable} {FAKE_TRAINER} {tmp_path / 'calls.txt'}"
    slm("sweep", "run", sweep, "--train-command", command, check=True)
    slm("sweep", "collect", sweep, check=True)
    with (sweep / "noise.csv").open() as handle:
        noise = list(csv.DictReader(handle))
    assert {r["run"] for r in noise} == {"L1-B512", "L1-B1024"}
    for row in noise:
        assert float(row["noise_scale_tokens"]) == 100.0 * int(row["step"])
        assert int(row["tokens"]) == int(row["step"]) * int(row["batch"])
    with (sweep / "curves.csv").open() as handle:
        curves = list(csv.DictReader(handle))
    assert {(r["run"], r["batch"], r["seq_len"]) for r in curves} == {
        ("L1-B512", "512", "32"), ("L1-B1024", "1024", "32")}


def test_two_jobs_train_every_run_once(slm, planned):
    sweep, calls, command = planned
    slm("sweep", "run", sweep, "--train-command", command, "--jobs", "2", check=True)
    assert sorted(c[0] for c in calls_of(calls)) == ["L1-M20", "L1-M80", "L2-M20", "L2-M80"]


def test_two_jobs_start_the_longest_runs_first(slm, planned):
    sweep, calls, command = planned
    proc = slm("sweep", "run", sweep, "--train-command", command, "--jobs", "2", check=True)
    with (sweep / "plan.csv").open() as handle:
        cost = {r["run"]: float(r["training_flops"]) for r in csv.DictReader(handle)}
    started = [line.split("] ")[1].split(":")[0] for line in proc.stdout.splitlines()
               if ": training N=" in line]
    assert started == sorted(cost, key=cost.get, reverse=True)
