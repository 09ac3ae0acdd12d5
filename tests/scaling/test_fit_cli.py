"""`slm sweep fit` end to end on a results file: fit.json, report.md and the plots."""

import json

import numpy as np
import pytest

from tests.scaling.synthetic import CHINCHILLA, isoflop_points, write_results

PLOTS = ("isoflop.png", "loss_vs_params_tokens.png", "frontier.png",
         "loss_vs_compute_by_multiplier.png", "overtrained.png")


@pytest.mark.slow
def test_fit_writes_every_output_for_isoflop_data_in_chinchilla_column_names(slm, tmp_path):
    params, tokens, loss, flops = isoflop_points(budgets=(1e18, 1e19, 1e20, 1e21),
                                                 sizes_per_budget=7, noise=0.003, seed=1)
    # Chinchilla's public isoFLOP data has model size, FLOPs and loss; tokens = C / (6N).
    results = write_results(tmp_path / "chinchilla.csv",
                            {"Model Size": params, "Training FLOP": flops, "loss": loss})
    out = tmp_path / "fit"
    proc = slm("sweep", "fit", "--results", results, "--output", out, "--bootstrap", "10",
               "--columns", "params=Model Size,flops=Training FLOP", check=True)
    assert "approach 3: E=" in proc.stdout
    fit = json.loads((out / "fit.json").read_text())
    p = fit["approach3"]["parameters"]
    assert p["E"]["value"] == pytest.approx(CHINCHILLA.E, rel=0.03)
    assert p["alpha"]["value"] == pytest.approx(CHINCHILLA.alpha, abs=0.03)
    assert p["beta"]["value"] == pytest.approx(CHINCHILLA.beta, abs=0.03)
    for name in ("E", "A", "B", "alpha", "beta"):
        low, high = p[name]["ci95"]
        assert low <= p[name]["value"] <= high and p[name]["se"] > 0
    assert fit["approach3"]["method"]["initialisations"] == 4500
    frontier = fit["approach3"]["frontier"]
    assert all(6 * r["params"] * r["tokens"] == pytest.approx(r["flops"]) for r in frontier)
    # approach 2: four budgets grouped from FLOPs alone, exponent near the law's β/(α+β)
    assert len(fit["approach2"]["budgets"]) == 4
    assert fit["approach2"]["params_law"]["exponent"] == pytest.approx(
        CHINCHILLA.params_exponent, abs=0.03)
    assert fit["overtrain"]["heldout"]  # the largest size, predicted
    assert abs(fit["overtrain"]["heldout_mean_abs_relative_error"]) < 0.05
    rows = fit["inference_optimal"]["rows"]
    assert [r["params"] for r in rows] == sorted((r["params"] for r in rows), reverse=True)
    report = (out / "report.md").read_text()
    assert "## Approach 3" in report and "## Approach 2" in report and "Sardana" in report
    for name in PLOTS:
        assert (out / name).stat().st_size > 10_000, name
        assert f"![{name}]({name})" in report
    assert np.isfinite(fit["approach3"]["tinyllama"]["predicted_loss"])
