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
