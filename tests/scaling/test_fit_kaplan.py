"""Kaplan et al.'s L(N, D) = [(N_c/N)^(α_N/α_D) + D_c/D]^α_D: gradient, recovery of a known law,
and its place in `slm sweep fit` and `slm sweep predict`."""

import json

import numpy as np
import pytest

from pretrain.scaling.fit_kaplan import KaplanLaw, fit_kaplan, objective_and_gradient
from tests.scaling.synthetic import write_results
from tests.user_errors import assert_user_error

# Exponents near those the CPU demo fits (README), scales in its range.
LAW = KaplanLaw(N_c=1.3e7, D_c=4.6e7, alpha_N=0.19, alpha_D=0.26)


def _points(count=30, noise=0.003, seed=0):
    rng = np.random.default_rng(seed)
    params = np.exp(rng.uniform(np.log(2e4), np.log(2e5), count))
    tokens = np.exp(rng.uniform(np.log(5e5), np.log(1e7), count))
    return params, tokens, LAW.loss(params, tokens) * np.exp(rng.normal(0.0, noise, count))


def test_the_gradient_matches_finite_differences():
    params, tokens, loss = _points(count=12)
    logs, log_loss = (np.log(params), np.log(tokens)), np.log(loss)
    theta = np.array([15.0, 17.0, 0.8, 0.3])
    _, gradient = objective_and_gradient(theta, logs, log_loss)
    for k in range(4):
        shift = np.zeros(4)
        shift[k] = 1e-6
        numeric = (objective_and_gradient(theta + shift, logs, log_loss)[0]
                   - objective_and_gradient(theta - shift, logs, log_loss)[0]) / 2e-6
        assert gradient[k] == pytest.approx(numeric, rel=1e-4, abs=1e-9)


def test_a_known_law_is_recovered_and_predicts_ten_times_the_data():
    fit = fit_kaplan(*_points(), bootstrap=20)
    assert fit.converged
    assert fit.law.alpha_N == pytest.approx(LAW.alpha_N, rel=0.1)
    assert fit.law.alpha_D == pytest.approx(LAW.alpha_D, rel=0.1)
    # the largest model on 10× the largest fitted token count: extrapolated within 1%
    assert float(fit.law.loss(2e5, 1e8)) == pytest.approx(float(LAW.loss(2e5, 1e8)), rel=0.01)
    assert len(fit.bootstrap) == 20


def test_fit_reports_kaplans_law_and_its_held_out_predictions_which_predict_repeats(slm, tmp_path):
    params, tokens, loss = _points(count=15, noise=0.002, seed=1)
    held = [(2e5, 1e8), (3e4, 1.5e8)]  # wide and long; narrow and over-trained
    columns = {"run": [f"fit{i}" for i in range(len(params))] + ["wide", "narrow"],
               "params": list(params) + [n for n, _ in held],
               "tokens": list(tokens) + [d for _, d in held],
               "loss": list(loss) + [float(LAW.loss(n, d)) for n, d in held],
               "holdout": [0] * len(params) + [1, 1]}
    results = write_results(tmp_path / "results.csv", columns)
    out = tmp_path / "fit"
    proc = slm("sweep", "fit", "--results", results, "--output", out, "--bootstrap", "10",
               "--fits", "3,kaplan", check=True)
    assert "held out wide: kaplan predicted" in proc.stdout
    fit = json.loads((out / "fit.json").read_text())
    assert set(fit["kaplan"]["parameters"]) == {"N_c", "D_c", "alpha_N", "alpha_D"}
    assert len(fit["kaplan"]["bootstrap_laws"]) == 10
    for row in fit["heldout"]:
        assert [p["law"] for p in row["predictions"]] == ["approach3", "kaplan"]
        kaplan = row["predictions"][1]
        assert abs(kaplan["relative_error"]) < 0.01
        assert kaplan["low"] < kaplan["loss"] < kaplan["high"]
    assert "## Kaplan et al. (2020)" in (out / "report.md").read_text()
    assert (out / "heldout.png").stat().st_size > 10_000
    wide = fit["heldout"][0]
    predicted = json.loads(slm("sweep", "predict", "--fit", out, "--params", "2e5", "--tokens",
                               "1e8", "--json", check=True).stdout)
    assert [r["law"] for r in predicted] == ["approach3", "kaplan"]
    assert predicted[1]["loss"] == pytest.approx(wide["predictions"][1]["loss"], rel=1e-9)


def test_asking_for_kaplan_with_too_few_runs_is_one_error_line(slm, tmp_path):
    params, tokens, loss = _points(count=6)
    results = write_results(tmp_path / "r.csv", {"params": params[:4], "tokens": tokens[:4],
                                                  "loss": loss[:4]})
    proc = slm("sweep", "fit", "--results", results, "--output", tmp_path / "fit",
               "--fits", "kaplan")
    assert_user_error(proc, "too few points")
    assert not (tmp_path / "fit").exists()
