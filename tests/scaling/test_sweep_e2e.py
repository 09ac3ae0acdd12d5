"""A real (tiny) sweep: plan → `slm pretrain` per run → collect, on the shared test data."""

import csv

import pytest


def _plan_run_collect(slm, recipe, sweep):
    """`slm sweep plan`, `run --jobs 2` and `collect` into ``sweep``; returns it."""
    slm("sweep", "plan", "--config", recipe, "--output", sweep, check=True)
    slm("sweep", "run", sweep, "--jobs", "2", check=True)
    slm("sweep", "collect", sweep, check=True)
    return sweep


@pytest.mark.slow
def test_a_real_two_run_sweep_trains_and_collects(slm, tmp_path, sweep_recipe, pretrain_data):
    recipe = sweep_recipe(tmp_path / "real.yaml", kind="chinchilla", tokens=[12800, 25600],
                          models=[{"n_layers": 1}],
                          base={"data": {"path": str(pretrain_data)},
                                "trainer": {"log_every_n_steps": 10}})
    sweep = tmp_path / "sweep"
    slm("sweep", "plan", "--config", recipe, "--output", sweep, check=True)
    slm("sweep", "run", sweep, check=True, env={"OMP_NUM_THREADS": "1"})
    again = slm("sweep", "run", sweep, check=True)
    assert again.stdout.count("finished already") == 2
    slm("sweep", "collect", sweep, check=True)
    with (sweep / "results.csv").open() as handle:
        results = {r["run"]: r for r in csv.DictReader(handle)}
    assert set(results) == {"L1-D12800", "L1-D25600"}
    assert int(results["L1-D25600"]["tokens"]) == 25600
    # twice the tokens, same model: lower final validation loss
    assert float(results["L1-D25600"]["loss"]) < float(results["L1-D12800"]["loss"])
    assert (sweep / "runs" / "L1-D25600" / "checkpoints").is_dir()


@pytest.mark.slow
def test_a_real_batch_sweep_fits_a_critical_batch_beside_the_logged_noise_scale(
        slm, tmp_path, sweep_recipe, pretrain_data):
    recipe = sweep_recipe(tmp_path / "batch.yaml", kind="batch", tokens=51200,
                          batch_sizes=[256, 512, 1024], models=[{"n_layers": 1}],
                          micro_batch_size=4, lr=3e-3, val_points=10,
                          base={"data": {"path": str(pretrain_data)},
                                "model": {"noise_scale": True},
                                "trainer": {"log_every_n_steps": 5}})
    sweep = _plan_run_collect(slm, recipe, tmp_path / "sweep")
    with (sweep / "noise.csv").open() as handle:
        noise = list(csv.DictReader(handle))
    assert {r["run"] for r in noise} == {"L1-B256", "L1-B512", "L1-B1024"}
    assert all(float(r["noise_scale_tokens"]) > 0 for r in noise)
    proc = slm("sweep", "fit", "--curves", sweep / "curves.csv", "--output", sweep / "fit",
               check=True)
    assert "B_crit=" in proc.stdout
    import json

    fit = json.loads((sweep / "fit" / "fit.json").read_text())
    assert fit["targets"] and fit["noise"] == str(sweep / "noise.csv")
    for target in fit["targets"]:
        assert target["critical_batch_tokens"] > 0 and len(target["runs"]) >= 3


@pytest.mark.slow
def test_a_real_sweep_predicts_its_held_out_run_from_the_other_runs_only(
        slm, tmp_path, sweep_recipe, pretrain_data):
    import json

    small = {"n_layers": 1, "dim": 16, "n_heads": 1, "ffn_dim": 48}
    large = {"n_layers": 1, "dim": 32, "n_heads": 1, "ffn_dim": 96}
    recipe = sweep_recipe(tmp_path / "held.yaml", kind="chinchilla", tokens=[12800, 25600, 51200],
                          models=[small, large], lr=[1e-2, 7e-3], val_points=1,
                          holdout=[{"model": large, "tokens": 102400}],
                          base={"data": {"path": str(pretrain_data)},
                                "trainer": {"log_every_n_steps": 50}})
    sweep = _plan_run_collect(slm, recipe, tmp_path / "sweep")
    with (sweep / "results.csv").open() as handle:
        results = list(csv.DictReader(handle))
    held = [r for r in results if r["holdout"] == "1"]
    assert [r["run"] for r in held] == ["holdout-L1d32h1f96-D102400"]
    slm("sweep", "fit", "--results", sweep / "results.csv", "--output", sweep / "fit",
        "--bootstrap", "10", check=True)
    fit = json.loads((sweep / "fit" / "fit.json").read_text())
    assert fit["holdout_runs"] == [held[0]["run"]] and fit["points"] == 6
    assert sorted(fit["fitted_runs"]) == sorted(r["run"] for r in results if r["holdout"] == "0")
    [entry] = fit["heldout"]
    assert entry["actual_loss"] == pytest.approx(float(held[0]["loss"]))
    for p in entry["predictions"]:
        assert p["low"] <= p["high"] and p["loss"] > 0
        assert p["relative_error"] == pytest.approx((p["loss"] - entry["actual_loss"])
                                                    / entry["actual_loss"])
    # The fit is that of the other six runs alone: the held-out loss never entered it.
    fitted_only = tmp_path / "fitted-only.csv"
    with fitted_only.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(results[0]))
        writer.writeheader()
        writer.writerows(r for r in results if r["holdout"] == "0")
    slm("sweep", "fit", "--results", fitted_only, "--output", tmp_path / "plain", "--bootstrap",
        "10", "--fits", "3", check=True)
    plain = json.loads((tmp_path / "plain" / "fit.json").read_text())
    assert plain["approach3"]["parameters"] == fit["approach3"]["parameters"]
    # `slm sweep predict` on the plan gives the same prediction for the held-out run
    rows = json.loads(slm("sweep", "predict", "--fit", sweep / "fit", "--plan",
                          sweep / "plan.csv", "--json", check=True).stdout)
    assert {r["run"] for r in rows} == {r["run"] for r in results}
    [predicted] = [r for r in rows if r["run"] == held[0]["run"] and r["law"] == "approach3"]
    assert predicted["loss"] == pytest.approx(entry["predictions"][0]["loss"])
