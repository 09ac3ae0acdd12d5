"""`slm sweep predict`: a run's loss before it is trained, from a fit's laws."""

import csv
import json

import pytest

from pretrain.scaling.fit_approach3 import ChinchillaLaw
from pretrain.scaling.fit_kaplan import KaplanLaw
from pretrain.scaling.fit_overtrain import OvertrainLaw
from tests.user_errors import assert_user_error

KEYS = {"run", "params", "tokens", "flops", "multiplier", "loss", "low", "high", "law"}


def test_a_point_gets_each_laws_loss_and_interval_as_json(slm, holdout_fit):
    out, fit, _ = holdout_fit
    proc = slm("sweep", "predict", "--fit", out, "--params", "2e8", "--tokens", "4e9", "--json",
               check=True)
    rows = json.loads(proc.stdout)
    assert [r["law"] for r in rows] == ["approach3", "overtrain", "kaplan"]
    law3 = ChinchillaLaw(**{k: v["value"] for k, v in fit["approach3"]["parameters"].items()
                            if k in ("E", "A", "B", "alpha", "beta")})
    law_ot = OvertrainLaw(**fit["overtrain"]["parameters"])
    for row in rows:
        assert KEYS <= set(row)
        assert row["flops"] == pytest.approx(6 * 2e8 * 4e9)
        assert row["multiplier"] == pytest.approx(20.0)
        assert row["low"] <= row["loss"] <= row["high"]
    assert rows[0]["loss"] == pytest.approx(float(law3.loss(2e8, 4e9)))
    assert rows[1]["loss"] == pytest.approx(float(law_ot.loss(4.8e18, 20.0)))
    law_k = KaplanLaw(**fit["kaplan"]["parameters"])
    assert rows[2]["loss"] == pytest.approx(float(law_k.loss(2e8, 4e9)))
    assert rows[0]["compute_ratio"] == 1.0  # 4.8e18 lies inside the fitted 1e18–1e20
    assert "warning" not in proc.stderr


def test_a_point_beyond_the_fitted_compute_warns_by_how_much(slm, holdout_fit):
    out, fit, _ = holdout_fit
    proc = slm("sweep", "predict", "--fit", out, "--params", "1e9", "--tokens", "1.6667e11",
               check=True)
    assert "warning: point: C = 6ND is outside the fitted compute range" in proc.stderr
    assert "10× the largest fitted run" in proc.stderr
    assert "N counts all parameters" in proc.stdout
    assert "approach3" in proc.stdout and "overtrain" in proc.stdout


def test_the_held_out_prediction_of_the_fit_equals_predict_at_the_same_point(slm, holdout_fit):
    out, fit, _ = holdout_fit
    held = fit["heldout"][1]
    proc = slm("sweep", "predict", "--fit", out / "fit.json", "--params", repr(held["params"]),
               "--tokens", repr(held["tokens"]), "--json", check=True)
    for row, expected in zip(json.loads(proc.stdout), held["predictions"]):
        for key in ("law", "loss", "low", "high"):
            assert row[key] == pytest.approx(expected[key], rel=1e-9), key


def test_a_plan_is_predicted_run_by_run_with_the_count_the_fit_uses(slm, tmp_path, holdout_fit):
    out, _, _ = holdout_fit
    plan = tmp_path / "plan.csv"
    with plan.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["run", "model", "params", "non_embedding_params", "tokens"])
        writer.writerow(["a", "L1", 2e8, 1e6, 4e9])
        writer.writerow(["b", "L2", 4e8, 2e6, 8e9])
    rows = json.loads(slm("sweep", "predict", "--fit", out, "--plan", plan, "--json",
                          check=True).stdout)
    laws = ["approach3", "overtrain", "kaplan"]
    assert [(r["run"], r["law"]) for r in rows] == [(run, law) for run in "ab" for law in laws]
    assert [r["params"] for r in rows] == [2e8] * 3 + [4e8] * 3  # all parameters, as fitted


@pytest.mark.parametrize("args, fragment", [
    ((), "give either --params N --tokens D or --plan"),
    (("--params", "1e8"), "needs both --params N and --tokens D"),
    (("--params", "-1", "--tokens", "1e9"), "--params must be a positive number"),
    (("--params", "1e8", "--tokens", "1e9", "--plan", "p.csv"), "give either"),
    (("--plan", "missing.csv"), "plan file not found"),
])
def test_bad_predict_input(slm, tmp_path, holdout_fit, args, fragment):
    out, _, _ = holdout_fit
    proc = slm("sweep", "predict", "--fit", out, *args, cwd=tmp_path)
    assert_user_error(proc, fragment)


def test_predict_from_a_directory_without_a_fit(slm, tmp_path):
    proc = slm("sweep", "predict", "--fit", tmp_path, "--params", "1e8", "--tokens", "1e9")
    assert_user_error(proc, "no fit.json", "--fit")


def test_a_plan_without_the_column_the_fit_counts(slm, tmp_path, holdout_fit):
    out, _, _ = holdout_fit
    plan = tmp_path / "plan.csv"
    plan.write_text("run,non_embedding_params,tokens\na,1e6,1e9\n")
    proc = slm("sweep", "predict", "--fit", out, "--plan", plan)
    assert_user_error(proc, "plan file lacks column(s) params", "counts N as total")


def test_a_fit_json_from_before_predictions_is_refused_with_a_reason(slm, tmp_path):
    (tmp_path / "fit.json").write_text(json.dumps(
        {"approach3": {"parameters": {k: {"value": 1.0} for k in ("E", "A", "B", "alpha",
                                                                   "beta")}}}))
    proc = slm("sweep", "predict", "--fit", tmp_path, "--params", "1e8", "--tokens", "1e9")
    assert_user_error(proc, "not a scaling-law fit.json from this version",
                      "'fitted_compute_range'", "refit the results")
