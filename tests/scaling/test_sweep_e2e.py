"""A real (tiny) sweep: plan → `slm pretrain` per run → collect, on the shared test data."""

import csv

import pytest


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
    sweep = tmp_path / "sweep"
    slm("sweep", "plan", "--config", recipe, "--output", sweep, check=True)
    slm("sweep", "run", sweep, "--jobs", "2", check=True)
    slm("sweep", "collect", sweep, check=True)
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
