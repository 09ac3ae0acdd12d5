"""Held-out runs: planned and trained with the sweep, never fitted, predicted by the fit."""

import csv
import json

import pytest

from tests.scaling.synthetic import synthetic_sweep, write_results
from tests.user_errors import assert_user_error


def read_plan(sweep_dir):
    with (sweep_dir / "plan.csv").open() as handle:
        return list(csv.DictReader(handle))


def test_holdout_runs_are_planned_last_and_marked(slm, tmp_path, sweep_recipe):
    recipe = sweep_recipe(tmp_path / "c.yaml", kind="chinchilla", tokens=[25600, 51200],
                          lr=[2e-3, 1e-3],
                          holdout=[{"model": {"n_layers": 2}, "tokens": 204800},
                                   {"model": {"n_layers": 1}, "M": 2.0}])
    slm("sweep", "plan", "--config", recipe, "--output", tmp_path / "s", check=True)
    rows = read_plan(tmp_path / "s")
    assert [r["run"] for r in rows[-2:]] == ["holdout-L2-D204800", "holdout-L1-M2"]
    assert [r["holdout"] for r in rows] == ["0"] * 4 + ["1", "1"]
    by_run = {r["run"]: r for r in rows}
    assert int(by_run["holdout-L2-D204800"]["tokens"]) == 204800
    assert float(by_run["holdout-L2-D204800"]["lr"]) == 1e-3  # the lr of the same model
    m2 = by_run["holdout-L1-M2"]
    assert float(m2["M"]) == pytest.approx(2.0, rel=0.01)
    assert float(m2["M"]) == pytest.approx(int(m2["tokens"]) / int(m2["params"]))
    sweep = json.loads((tmp_path / "s" / "sweep.json").read_text())
    assert sweep["holdout"] == ["holdout-L2-D204800", "holdout-L1-M2"]
    assert sweep["params_count"] == "total"


def test_a_holdout_shorter_than_min_steps_is_an_error_not_a_silent_drop(slm, tmp_path,
                                                                          sweep_recipe):
    recipe = sweep_recipe(tmp_path / "c.yaml", kind="chinchilla", tokens=[25600],
                          holdout=[{"model": {"n_layers": 1}, "tokens": 2560}])
    proc = slm("sweep", "plan", "--config", recipe, "--output", tmp_path / "s")
    assert_user_error(proc, "held-out run holdout-L1-D2560 would train 10 steps",
                      "holdout[0]")
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("entry", [{"model": {"n_layers": 1}},
                                   {"model": {"n_layers": 1}, "tokens": 1e5, "M": 3},
                                   {"model": {"n_layers": 1}, "tokens": -5},
                                   {"model": {"n_layers": 1}, "D": 1e5}])
def test_a_malformed_holdout_entry(slm, tmp_path, sweep_recipe, entry):
    recipe = sweep_recipe(tmp_path / "c.yaml", kind="chinchilla", tokens=[25600],
                          holdout=[entry])
    proc = slm("sweep", "plan", "--config", recipe, "--output", tmp_path / "s")
    assert_user_error(proc, "holdout[0]")


def test_a_holdout_model_outside_models_needs_its_own_lr(slm, tmp_path, sweep_recipe):
    recipe = sweep_recipe(tmp_path / "c.yaml", kind="chinchilla", tokens=[25600],
                          lr=[2e-3, 1e-3], holdout=[{"model": {"n_layers": 3}, "tokens": 51200}])
    proc = slm("sweep", "plan", "--config", recipe, "--output", tmp_path / "s")
    assert_user_error(proc, "needs its own lr", "holdout[0]: lr")


@pytest.mark.slow
def test_held_out_runs_never_enter_the_fit(slm, tmp_path, holdout_fit):
    _, fit, _ = holdout_fit
    columns = synthetic_sweep()
    # The same file without the held-out rows, and no size held out of its over-training fit
    # (--holdout-params above every size), as a fit with held-out runs does.
    without = write_results(tmp_path / "fitted-only.csv",
                            {k: list(v)[:-2] for k, v in columns.items() if k != "holdout"})
    slm("sweep", "fit", "--results", without, "--output", tmp_path / "fit", "--bootstrap", "10",
        "--fits", "3,overtrain,kaplan", "--holdout-params", "1e30", check=True)
    plain = json.loads((tmp_path / "fit" / "fit.json").read_text())
    assert fit["holdout_runs"] == ["held0", "held1"]
    assert fit["points"] == 15 and not any(r.startswith("held") for r in fit["fitted_runs"])
    # the laws are those of the file without the held-out rows, to the last digit
    for law in ("approach3", "overtrain", "kaplan"):
        assert fit[law]["parameters"] == plain[law]["parameters"]
        assert fit[law]["bootstrap_laws"] == plain[law]["bootstrap_laws"]
    assert fit["overtrain"]["heldout"] == []  # no size held out inside the over-training fit


def test_each_held_out_run_has_prediction_interval_actual_and_error(holdout_fit):
    out, fit, stdout = holdout_fit
    assert [h["run"] for h in fit["heldout"]] == ["held0", "held1"]
    for h in fit["heldout"]:
        assert h["compute_vs_largest_fitted"] == pytest.approx(10, rel=0.01)
        assert [p["law"] for p in h["predictions"]] == ["approach3", "overtrain", "kaplan"]
        for p in h["predictions"]:
            assert p["low"] <= p["loss"] <= p["high"]
            assert p["relative_error"] == pytest.approx(
                (p["loss"] - h["actual_loss"]) / h["actual_loss"])
        # the data come from Chinchilla's law, which approach 3 and the over-training law
        # extrapolate a decade (Kaplan's form, N and D inside one power, misses by 1.7% and 7%)
        errors = {p["law"]: abs(p["relative_error"]) for p in h["predictions"]}
        assert errors["approach3"] < 0.02 and errors["overtrain"] < 0.02
        assert f"held out {h['run']}: approach3 predicted" in stdout
    report = (out / "report.md").read_text()
    assert "## Held-out runs" in report and "| held1 |" in report
    assert (out / "loss_vs_compute_by_multiplier.png").stat().st_size > 10_000


def test_holdout_column_must_be_a_flag(slm, tmp_path):
    columns = synthetic_sweep()
    columns["holdout"] = ["maybe"] + columns["holdout"][1:]
    results = write_results(tmp_path / "r.csv", columns)
    proc = slm("sweep", "fit", "--results", results, "--output", tmp_path / "fit")
    assert_user_error(proc, "holdout must be 1 or 0", f"{results}:2")


def test_extra_runs_are_fitted_and_carry_no_isoflop_budget(slm, tmp_path, sweep_recipe):
    recipe = sweep_recipe(tmp_path / "iso.yaml", kind="isoflop", budgets=[1e12],
                          runs=[{"model": {"n_layers": 1}, "M": 30}],
                          holdout=[{"model": {"n_layers": 1}, "M": 60}])
    slm("sweep", "plan", "--config", recipe, "--output", tmp_path / "s", check=True)
    rows = {r["run"]: r for r in read_plan(tmp_path / "s")}
    assert list(rows)[-2:] == ["L1-M30", "holdout-L1-M60"]
    assert rows["L1-M30"]["holdout"] == "0" and rows["L1-M30"]["budget"] == ""
    assert float(rows["C1e12-L1"]["budget"]) == 1e12


def test_approach_2_leaves_out_runs_without_a_budget():
    import numpy as np

    from pretrain.scaling.fit_approach2 import usable_profiles

    params = np.array([1e6, 2e6, 4e6, 1e6, 2e6, 4e6, 1e6])
    loss = np.array([3.0, 2.9, 3.0, 2.8, 2.7, 2.8, 2.75])
    flops = np.array([1e15] * 3 + [1e16] * 3 + [1e16])
    budget = np.array([1e15] * 3 + [1e16] * 3 + [np.nan])
    profiles, skipped = usable_profiles(params, loss, flops, budget)
    assert [len(p.params) for p in profiles] == [3, 3] and skipped == []
