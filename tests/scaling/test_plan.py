"""`slm sweep plan`: the arithmetic of each kind and the configs it writes."""

import csv

import pytest
import yaml

from model.config import ladder_config
from model.flops import non_embedding_param_count, param_count


def read_plan(sweep_dir):
    with (sweep_dir / "plan.csv").open() as handle:
        return list(csv.DictReader(handle))


def test_isoflop_runs_spend_their_budget_within_one_percent(slm, tmp_path, sweep_recipe):
    recipe = sweep_recipe(tmp_path / "iso.yaml", kind="isoflop", budgets=[1e12, "3e12"])
    slm("sweep", "plan", "--config", recipe, "--output", tmp_path / "s", check=True)
    rows = read_plan(tmp_path / "s")
    assert len(rows) == 4  # 2 budgets × 2 sizes, all ≥ 50 steps
    for row in rows:
        params, tokens = int(row["params"]), int(row["tokens"])  # N: all parameters
        budget = float(row["budget"])
        assert 6 * params * tokens == pytest.approx(budget, rel=0.01)
        assert float(row["flops"]) == pytest.approx(6 * params * tokens)
        assert tokens == int(row["steps"]) * int(row["batch"]) == int(row["steps"]) * 256
        assert float(row["M"]) == pytest.approx(tokens / params)
    assert {int(r["non_embedding_params"]) for r in rows} == {
        non_embedding_param_count(ladder_config(1, vocab_size=1024)),
        non_embedding_param_count(ladder_config(2, vocab_size=1024))}
    assert {int(r["params"]) for r in rows} == {
        param_count(ladder_config(1, vocab_size=1024)),
        param_count(ladder_config(2, vocab_size=1024))}


def test_params_non_embedding_counts_kaplans_n_in_budget_and_multiplier(slm, tmp_path,
                                                                         sweep_recipe):
    recipe = sweep_recipe(tmp_path / "iso.yaml", kind="isoflop", budgets=[4e11],
                          params="non_embedding")
    slm("sweep", "plan", "--config", recipe, "--output", tmp_path / "s", check=True)
    for row in read_plan(tmp_path / "s"):
        params, tokens = int(row["non_embedding_params"]), int(row["tokens"])
        assert 6 * params * tokens == pytest.approx(4e11, rel=0.01)
        assert float(row["M"]) == pytest.approx(tokens / params)
        assert int(row["params"]) > params  # both counts still carried


def test_overtrain_runs_train_for_their_multiplier(slm, tmp_path, sweep_recipe):
    recipe = sweep_recipe(tmp_path / "ot.yaml", kind="overtrain", multipliers=[0.05, 20, 2700])
    slm("sweep", "plan", "--config", recipe, "--output", tmp_path / "s", check=True)
    rows = read_plan(tmp_path / "s")
    # M=0.05 on the 196,800-parameter model is 38 steps of 256 tokens: below min_steps, dropped.
    assert sorted(r["run"] for r in rows) == ["L1-M20", "L1-M2700", "L2-M0.05", "L2-M20",
                                              "L2-M2700"]
    for row in rows:
        multiplier = float(row["run"].split("-M")[1])
        assert float(row["M"]) == pytest.approx(multiplier, rel=0.01)


def test_chinchilla_runs_cover_every_size_at_every_horizon(slm, tmp_path, sweep_recipe):
    recipe = sweep_recipe(tmp_path / "c.yaml", kind="chinchilla", tokens=[25600, 51200, 102400])
    slm("sweep", "plan", "--config", recipe, "--output", tmp_path / "s", check=True)
    rows = read_plan(tmp_path / "s")
    assert sorted((r["model"], int(r["tokens"])) for r in rows) == [
        (m, t) for m in ("L1", "L2") for t in (25600, 51200, 102400)]


def test_each_run_gets_a_full_pretrain_config_of_its_own(slm, tmp_path, sweep_recipe):
    recipe = sweep_recipe(tmp_path / "c.yaml", kind="chinchilla", tokens=[51200], lr=[2e-3, 1e-3],
                          warmup_fraction=0.1)
    out = tmp_path / "s"
    slm("sweep", "plan", "--config", recipe, "--output", out, check=True)
    rows = {r["model"]: r for r in read_plan(out)}
    config = yaml.safe_load(open(rows["L2"]["config"]))
    assert config["trainer"]["default_root_dir"] == str(out / "runs" / "L2-D51200")
    assert config["trainer"]["max_steps"] == 200 == 51200 // 256
    shape = ladder_config(2)
    assert (config["model"]["dim"], config["model"]["n_layers"], config["model"]["ffn_dim"]) == \
        (shape.dim, shape.n_layers, shape.ffn_dim)
    assert config["model"]["vocab_size"] == 1024  # from the base config
    assert config["model"]["lr"] == 1e-3 and config["model"]["min_lr"] == pytest.approx(1e-4)
    assert config["model"]["warmup_steps"] == 20
    # the last step is always validated, so "finished" can be read from metrics.csv
    assert 200 % config["data"]["val_every_n_steps"] == 0
    assert config["data"]["path"] == "data/none" and config["seed_everything"] == 3
    assert float(rows["L1"]["lr"]) == 2e-3


def test_batch_runs_share_the_token_budget_with_square_root_learning_rates(slm, tmp_path,
                                                                          sweep_recipe):
    recipe = sweep_recipe(tmp_path / "b.yaml", kind="batch", models=[{"n_layers": 1}],
                          tokens=102400, batch_sizes=[512, 1024, 2048], lr=4e-3,
                          reference_batch_tokens=1024, micro_batch_size=4)
    slm("sweep", "plan", "--config", recipe, "--output", tmp_path / "s", check=True)
    rows = {int(r["batch"]): r for r in read_plan(tmp_path / "s")}
    assert sorted(rows) == [512, 1024, 2048]
    for batch, row in rows.items():
        assert row["run"] == f"L1-B{batch}"
        assert int(row["tokens"]) == 102400 and int(row["steps"]) == 102400 // batch
        assert float(row["lr"]) == pytest.approx(4e-3 * (batch / 1024) ** 0.5)
        config = yaml.safe_load(open(row["config"]))
        assert config["data"]["global_batch_tokens"] == batch
        assert config["data"]["micro_batch_size"] == 4
        assert config["model"]["lr"] == pytest.approx(float(row["lr"]))


def test_an_off_ladder_shape_is_planned_with_its_own_width(slm, tmp_path, sweep_recipe):
    recipe = sweep_recipe(tmp_path / "c.yaml", kind="chinchilla", tokens=[25600],
                          models=[{"n_layers": 1, "dim": 32, "n_heads": 1, "ffn_dim": 96}])
    slm("sweep", "plan", "--config", recipe, "--output", tmp_path / "s", check=True)
    (row,) = read_plan(tmp_path / "s")
    assert row["run"] == "L1d32h1f96-D25600"
    # attention 4·32² + SwiGLU 3·32·96 + two norms 2·32, plus the final norm 32
    assert int(row["non_embedding_params"]) == 4 * 32 * 32 + 3 * 32 * 96 + 2 * 32 + 32
    config = yaml.safe_load(open(row["config"]))
    assert (config["model"]["dim"], config["model"]["n_heads"], config["model"]["n_kv_heads"],
            config["model"]["ffn_dim"]) == (32, 1, 1, 96)


def test_the_cpu_demo_holds_out_two_runs_at_ten_times_the_fitted_compute(slm, tmp_path):
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    slm("sweep", "plan", "--config", root / "configs/scaling/demo-cpu.yaml", "--output",
        tmp_path / "s", cwd=root, check=True)
    rows = read_plan(tmp_path / "s")
    fitted = [r for r in rows if r["holdout"] == "0"]
    held = [r for r in rows if r["holdout"] == "1"]
    assert len(fitted) == 10 and len(held) == 2
    largest = max(float(r["flops"]) for r in fitted)
    assert all(float(r["flops"]) >= 10 * largest for r in held)
    for r in rows:  # N counts all parameters
        assert float(r["flops"]) == pytest.approx(6 * int(r["params"]) * int(r["tokens"]))
    assert max(int(r["tokens"]) for r in rows) < 151_000_000  # one epoch of the corpus
    assert {r["model"][:2] for r in rows} == {"L2"}  # one family: depth 2, widths vary
    assert {int(r["batch"]) for r in rows} == {1024}
    # the measured frontier puts the optimum at M ≈ 24 at their compute (README)
    near_optimal, over_trained = sorted(float(r["M"]) for r in held)
    assert near_optimal < 100 and over_trained >= 10 * 24
