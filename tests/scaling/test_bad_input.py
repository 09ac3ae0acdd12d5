"""User mistakes with `slm sweep`: one `error:` line, exit 2, nothing half-written."""

import pytest

from tests.scaling.synthetic import grid_points, write_results
from tests.user_errors import assert_user_error


@pytest.fixture
def good_columns():
    params, tokens, loss = grid_points(count=8, noise=0.01)
    return {"params": params, "tokens": tokens, "loss": loss}


def test_results_missing_a_column(slm, tmp_path, good_columns):
    del good_columns["tokens"]
    results = write_results(tmp_path / "r.csv", good_columns)
    proc = slm("sweep", "fit", "--results", results, "--output", tmp_path / "fit")
    assert_user_error(proc, "lacks column(s) tokens", str(results))
    assert not (tmp_path / "fit").exists()


@pytest.mark.parametrize("bad", ["0", "-3e9", "nan", "inf"])
def test_results_with_a_non_positive_value(slm, tmp_path, good_columns, bad):
    good_columns["params"] = [str(v) for v in good_columns["params"]]
    good_columns["params"][2] = bad
    results = write_results(tmp_path / "r.csv", good_columns)
    proc = slm("sweep", "fit", "--results", results, "--output", tmp_path / "fit")
    assert_user_error(proc, "params must be positive and finite", f"{results}:4")


def test_results_with_a_value_that_is_not_a_number(slm, tmp_path, good_columns):
    good_columns["loss"] = ["2.5"] * 7 + ["two"]
    results = write_results(tmp_path / "r.csv", good_columns)
    proc = slm("sweep", "fit", "--results", results, "--output", tmp_path / "fit")
    assert_user_error(proc, "loss is not a number: 'two'", f"{results}:9")


def test_too_few_points_for_approach_3(slm, tmp_path, good_columns):
    results = write_results(tmp_path / "r.csv", {k: v[:5] for k, v in good_columns.items()})
    proc = slm("sweep", "fit", "--results", results, "--output", tmp_path / "fit")
    assert_user_error(proc, "too few points for fit 3", "5 in results", "at least 6")


def test_too_few_isoflop_budgets_for_approach_2_when_asked_for(slm, tmp_path, good_columns):
    results = write_results(tmp_path / "r.csv", good_columns)
    proc = slm("sweep", "fit", "--results", results, "--output", tmp_path / "fit", "--fits", "2")
    assert_user_error(proc, "too few points for fit 2")


def test_missing_results_file(slm, tmp_path):
    proc = slm("sweep", "fit", "--results", tmp_path / "none.csv", "--output", tmp_path / "fit")
    assert_user_error(proc, "results file not found")


def test_unknown_fit_name(slm, tmp_path, good_columns):
    results = write_results(tmp_path / "r.csv", good_columns)
    proc = slm("sweep", "fit", "--results", results, "--output", tmp_path / "fit",
               "--fits", "3,approach9")
    assert_user_error(proc, "unknown fit(s) approach9", "--fits")


def test_run_or_collect_on_a_directory_that_is_not_a_sweep(slm, tmp_path):
    for verb in ("run", "collect"):
        assert_user_error(slm("sweep", verb, tmp_path), "not a sweep directory", str(tmp_path))


def test_plan_into_a_directory_planned_from_another_config(slm, tmp_path, sweep_recipe):
    first = sweep_recipe(tmp_path / "a.yaml", kind="overtrain", multipliers=[20, 40])
    second = sweep_recipe(tmp_path / "b.yaml", kind="overtrain", multipliers=[20, 80])
    out = tmp_path / "sweep"
    slm("sweep", "plan", "--config", first, "--output", out, check=True)
    before = (out / "plan.csv").read_text()
    proc = slm("sweep", "plan", "--config", second, "--output", out)
    assert_user_error(proc, "holds a plan from another sweep config", str(first))
    assert (out / "plan.csv").read_text() == before
    # the same config again is fine (idempotent)
    slm("sweep", "plan", "--config", first, "--output", out, check=True)


def test_plan_with_an_unknown_recipe_key(slm, tmp_path, sweep_recipe):
    recipe = sweep_recipe(tmp_path / "a.yaml", kind="overtrain", multipliers=[20], budget=[1])
    proc = slm("sweep", "plan", "--config", recipe, "--output", tmp_path / "out")
    assert_user_error(proc, "unknown key 'budget'", str(recipe))
    assert not (tmp_path / "out").exists()


def test_collect_refuses_unfinished_runs(slm, tmp_path, sweep_recipe):
    recipe = sweep_recipe(tmp_path / "a.yaml", kind="overtrain", multipliers=[20, 40])
    slm("sweep", "plan", "--config", recipe, "--output", tmp_path / "s", check=True)
    assert_user_error(slm("sweep", "collect", tmp_path / "s"), "not finished", "--allow-missing")


def test_fit_with_both_results_and_curves(slm, tmp_path, good_columns):
    results = write_results(tmp_path / "r.csv", good_columns)
    proc = slm("sweep", "fit", "--results", results, "--curves", results, "--output", tmp_path)
    assert_user_error(proc, "give exactly one of --results", "--curves")


def test_curves_missing_the_batch_column(slm, tmp_path):
    curves = write_results(tmp_path / "curves.csv", {"run": ["a"], "step": [1], "val_loss": [3]})
    proc = slm("sweep", "fit", "--curves", curves, "--output", tmp_path / "fit")
    assert_user_error(proc, "curves file lacks column(s) batch, seq_len", str(curves))
    assert not (tmp_path / "fit").exists()


def test_curves_of_fewer_than_three_batch_sizes(slm, tmp_path):
    curves = write_results(tmp_path / "curves.csv", {
        "run": ["a", "a", "b", "b"], "batch": [512, 512, 1024, 1024], "seq_len": [128] * 4,
        "step": [10, 20, 10, 20], "val_loss": [3.0, 2.5, 3.1, 2.6]})
    proc = slm("sweep", "fit", "--curves", curves, "--output", tmp_path / "fit")
    assert_user_error(proc, "needs runs at ≥ 3 batch sizes; the curves have 2", str(curves))


def test_batch_sweep_with_two_models(slm, tmp_path, sweep_recipe):
    recipe = sweep_recipe(tmp_path / "b.yaml", kind="batch", tokens=51200,
                          batch_sizes=[256, 512, 1024])
    proc = slm("sweep", "plan", "--config", recipe, "--output", tmp_path / "out")
    assert_user_error(proc, "a batch sweep trains one model", f"{recipe}: models")


def test_batch_sweep_logging_the_noise_scale_without_accumulation(slm, tmp_path, sweep_recipe):
    # 256 tokens = 8 sequences of 32 = one micro-batch: no second batch size to compare
    recipe = sweep_recipe(tmp_path / "b.yaml", kind="batch", tokens=51200,
                          batch_sizes=[256, 512, 1024], models=[{"n_layers": 1}],
                          base={"model": {"noise_scale": True}})
    proc = slm("sweep", "plan", "--config", recipe, "--output", tmp_path / "out")
    assert_user_error(proc, "model.noise_scale needs at least 2 micro-batches",
                      "batch size 256", f"{recipe}: batch_sizes")
    assert not (tmp_path / "out").exists()
