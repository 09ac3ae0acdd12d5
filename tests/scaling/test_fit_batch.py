"""The critical batch from a batch-size sweep: McCandlish et al.'s trade-off, fitted."""

import json
import math

import numpy as np
import pytest

from pretrain.scaling.fit_batch import Curve, fit_batch_sweep, fit_target, read_curves, \
    read_noise
from tests.scaling.synthetic import tradeoff_critical_batch, write_batch_sweep


def test_exact_tradeoff_points_give_back_their_minimum_steps_tokens_and_critical_batch():
    batch = np.array([256.0, 1024, 4096, 16384, 65536])
    steps = 300.0 + 1.2e6 / batch  # S = S_min + E_min / B
    fit = fit_target(batch, steps, 3.0, [f"r{i}" for i in range(5)])
    assert fit.steps_min == pytest.approx(300.0, rel=1e-6)
    assert fit.tokens_min == pytest.approx(1.2e6, rel=1e-6)
    assert fit.critical_batch == pytest.approx(4000.0, rel=1e-6)
    assert not fit.at_bound
    # every point lies on the hyperbola (S/S_min − 1)(E/E_min − 1) = 1
    assert np.allclose((fit.steps / fit.steps_min - 1) * (fit.tokens / fit.tokens_min - 1), 1.0)


def test_steps_to_a_target_interpolate_in_log_step_on_the_running_minimum():
    curve = Curve(run="r", batch=1024, seq_len=128, steps=np.array([10.0, 20, 40]),
                  loss=np.array([3.0, 3.2, 2.0]))  # the bump at step 20 does not count
    assert curve.steps_to(2.5) == pytest.approx(math.sqrt(20 * 40))
    assert curve.steps_to(1.9) is None  # never reached
    assert curve.steps_to(3.1) is None  # already below at the first validation


def test_a_synthetic_sweep_recovers_the_critical_batch_and_noise_scale(tmp_path):
    curves_path = write_batch_sweep(tmp_path)
    fit = fit_batch_sweep(read_curves(curves_path), [2.8, 2.6],
                          read_noise(tmp_path / "noise.csv"))
    for target in fit.fits:
        truth = float(tradeoff_critical_batch(target.target_loss))
        assert target.critical_batch == pytest.approx(truth, rel=0.03)
        assert fit.noise_scale_at(target.target_loss) == pytest.approx(truth, rel=0.03)
        assert len(target.runs) == 7


def test_a_target_reached_at_too_few_batch_sizes_is_skipped_with_the_reason(tmp_path):
    fit = fit_batch_sweep(read_curves(write_batch_sweep(tmp_path, noise=False)), [3.5, 2.8])
    assert [t.target_loss for t in fit.fits] == [2.8]
    assert fit.skipped == [(3.5, "reached by runs at 2 batch size(s), fewer than 3")]


def test_fit_with_curves_writes_the_critical_batch_report_and_plots(slm, tmp_path):
    curves_path = write_batch_sweep(tmp_path)
    out = tmp_path / "fit"
    proc = slm("sweep", "fit", "--curves", curves_path, "--output", out,
               "--target-losses", "2.6", check=True)
    assert "B_crit=" in proc.stdout and "B_simple" in proc.stdout
    fit = json.loads((out / "fit.json").read_text())
    assert fit["kind"] == "batch" and fit["noise"].endswith("noise.csv")
    (target,) = fit["targets"]
    assert target["critical_batch_tokens"] == pytest.approx(4000 / 0.6, rel=0.03)
    assert target["critical_batch_sequences"] == pytest.approx(
        target["critical_batch_tokens"] / 100)
    low, high = target["critical_batch_tokens_ci95"]
    assert low < target["critical_batch_tokens"] < high
    report = (out / "report.md").read_text()
    for name in ("batch_tradeoff.png", "critical_batch.png"):
        assert (out / name).stat().st_size > 10_000
        assert f"![{name}]({name})" in report
