"""Non-finite losses: the step is skipped (no update, counted); K in a row abort the run."""

import math

import pytest
import torch

from pretrain.errors import PretrainError
from pretrain.training.module import PretrainModule
from tests.fixtures.pretrain import metrics_losses, tiny_config


def _nan_on_calls(monkeypatch, calls):
    """Make the training loss NaN on the given (1-based) training loss calls."""
    original = PretrainModule.loss
    counter = {"n": 0}

    def loss(self, batch):
        value = original(self, batch)
        if self.training:
            counter["n"] += 1
            if counter["n"] in calls:
                return value * float("nan")
        return value

    monkeypatch.setattr(PretrainModule, "loss", loss)


def _run(config):
    from pretrain.commands.pretrain import run

    return run(["--config", str(config)])


def test_a_non_finite_step_is_skipped_counted_and_training_goes_on(pretrain_data, tmp_path, monkeypatch):
    _nan_on_calls(monkeypatch, {5})  # the 3rd step's first micro-batch (2 per step)
    run_dir = tmp_path / "run"
    assert _run(tiny_config(run_dir, pretrain_data, trainer={"max_steps": 4})) == 0
    from pretrain.training.checkpoint.layout import read_checkpoint_meta
    from pretrain.training.run_logs import read_metrics

    meta = read_checkpoint_meta(run_dir / "checkpoints" / "step-000004")
    assert meta["skipped_steps"] == 1
    assert meta["tokens_seen"] == 5 * 256  # the skipped step's batch was consumed too
    rows = [r for r in read_metrics(run_dir / "metrics.csv") if r["loss"]]
    assert [r["step"] for r in rows] == ["1", "2", "3", "4"]  # a skipped step is no step
    assert [r["skipped_steps"] for r in rows] == ["0", "0", "1", "1"]
    assert all(math.isfinite(float(r["loss"])) for r in rows)
    state = torch.load(run_dir / "checkpoints" / "step-000004" / "lightning.ckpt", weights_only=True)
    assert all(torch.isfinite(t).all() for t in state["state_dict"].values())


def test_max_nonfinite_steps_in_a_row_abort_with_a_clear_error(pretrain_data, tmp_path, monkeypatch):
    _nan_on_calls(monkeypatch, set(range(3, 100)))  # every micro-batch from step 2 on
    config = tiny_config(tmp_path / "run", pretrain_data, trainer={"max_steps": 6},
                         model={"max_nonfinite_steps": 2})
    with pytest.raises(PretrainError, match="non-finite for 2 consecutive steps after step 1"):
        _run(config)
    assert metrics_losses(tmp_path / "run")[1] > 0
