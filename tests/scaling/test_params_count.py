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


def test_fit_json_records_the_non_embedding_count(slm, tmp_path):
    count, meaning = "non_embedding", "non-embedding parameters"
    path, params, non_embedding, tokens = both_counts(tmp_path)
    proc = slm("sweep", "fit", "--results", path, "--output", tmp_path / "fit", "--params",
               count, "--bootstrap", "0", "--fits", "3", check=True)
    fit = json.loads((tmp_path / "fit" / "fit.json").read_text())
    assert fit["params_count"] == count and fit["params_meaning"] == meaning
    n = non_embedding
    assert fit["fitted_compute_range"] == pytest.approx([min(6 * n * tokens),
                                                         max(6 * n * tokens)])
    assert f"N counts {meaning}" in proc.stdout
    assert f"N counts {meaning}" in (tmp_path / "fit" / "report.md").read_text()


def test_non_embedding_fit_without_the_column(slm, tmp_path):
    params, tokens, loss = grid_points(count=8, noise=0.01)
    path = write_results(tmp_path / "r.csv", {"params": params, "tokens": tokens, "loss": loss})
    proc = slm("sweep", "fit", "--results", path, "--output", tmp_path / "fit", "--params",
               "non_embedding")
    assert_user_error(proc, "lacks column(s) non_embedding_params (asked for by --params "
                            "non_embedding)", str(path))
    assert not (tmp_path / "fit").exists()
