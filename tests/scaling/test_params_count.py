"""`slm sweep fit --params total|non_embedding`: which N the fit counts, recorded in fit.json."""

import json

import numpy as np
import pytest

from pretrain.scaling.results import read_results
from tests.scaling.synthetic import grid_points, write_results
from tests.user_errors import assert_user_error


def both_counts(tmp_path):
    params, tokens, loss = grid_points(count=8, noise=0.01)
    non_embedding = params * 0.6
    return write_results(tmp_path / "r.csv", {"params": params,
                                              "non_embedding_params": non_embedding,
                                              "tokens": tokens, "loss": loss,
                                              "flops": 6 * params * tokens}), params, \
        non_embedding, tokens


def test_results_count_all_parameters_by_default(tmp_path):
    path, params, _, tokens = both_counts(tmp_path)
    results = read_results(path)
    assert results.count == "total"
    np.testing.assert_allclose(results.params, params)
    np.testing.assert_allclose(results.flops, 6 * params * tokens)


def test_non_embedding_count_takes_its_column_and_recomputes_compute(tmp_path):
    path, _, non_embedding, tokens = both_counts(tmp_path)
    results = read_results(path, count="non_embedding")
    np.testing.assert_allclose(results.params, non_embedding)
    np.testing.assert_allclose(results.flops, 6 * non_embedding * tokens)
    np.testing.assert_allclose(results.tokens_per_param, tokens / non_embedding)


def test_fit_json_records_all_parameters_by_default(holdout_fit):
    out, fit, stdout = holdout_fit
    assert fit["params_count"] == "total" and fit["params_meaning"] == "all parameters"
    assert "N counts all parameters (--params total)" in stdout


@pytest.fixture(scope="module")
def non_embedding_fit(tmp_path_factory):
    """A `--params non_embedding` fit without bootstrap: (results path, columns, out, stdout)."""
    import subprocess
    import sys

    root = tmp_path_factory.mktemp("non-embedding")
    path, params, non_embedding, tokens = both_counts(root)
    out = root / "fit"
    proc = subprocess.run([sys.executable, "-m", "pretrain.cli", "sweep", "fit", "--results",
                           str(path), "--output", str(out), "--params", "non_embedding",
                           "--bootstrap", "0", "--fits", "3"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return (params, non_embedding, tokens), out, proc.stdout


def test_fit_json_records_the_non_embedding_count(non_embedding_fit):
    (params, non_embedding, tokens), out, stdout = non_embedding_fit
    meaning = "non-embedding parameters"
    fit = json.loads((out / "fit.json").read_text())
    assert fit["params_count"] == "non_embedding" and fit["params_meaning"] == meaning
    assert fit["fitted_compute_range"] == pytest.approx([min(6 * non_embedding * tokens),
                                                         max(6 * non_embedding * tokens)])
    assert f"N counts {meaning}" in stdout
    assert f"N counts {meaning}" in (out / "report.md").read_text()


def test_predict_reads_the_non_embedding_column_of_a_plan_and_has_no_interval_without_bootstrap(
        slm, tmp_path, non_embedding_fit):
    _, out, _ = non_embedding_fit
    plan = tmp_path / "plan.csv"
    plan.write_text("run,params,non_embedding_params,tokens\na,5e8,3e8,2e10\n")
    proc = slm("sweep", "predict", "--fit", out, "--plan", plan, "--json", check=True)
    [row] = json.loads(proc.stdout)  # approach 3 only: no over-training law was fitted
    assert row["params"] == 3e8 and row["multiplier"] == pytest.approx(2e10 / 3e8)
    assert row["low"] is None and row["high"] is None


def test_non_embedding_fit_without_the_column(slm, tmp_path):
    params, tokens, loss = grid_points(count=8, noise=0.01)
    path = write_results(tmp_path / "r.csv", {"params": params, "tokens": tokens, "loss": loss})
    proc = slm("sweep", "fit", "--results", path, "--output", tmp_path / "fit", "--params",
               "non_embedding")
    assert_user_error(proc, "lacks column(s) non_embedding_params (asked for by --params "
                            "non_embedding)", str(path))
    assert not (tmp_path / "fit").exists()
