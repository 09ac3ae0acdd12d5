"""A checkpoint requested mid-step (e.g. by a preemption signal handler) is written at the next
step boundary, in the normal layout, and can stop training there."""

from pretrain.training.checkpoint.callback import PeriodicCheckpoint
from tests.fixtures.pretrain import tiny_config


def test_requested_checkpoint_lands_on_the_next_step_and_stops(pretrain_data, tmp_path, monkeypatch):
    from pretrain.training.checkpoint.layout import complete_checkpoints, read_checkpoint_meta
    from pretrain.commands.pretrain import run

    def request_during_step_3(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == 2:  # step 3 has begun
            self.request_checkpoint(stop=True)

    monkeypatch.setattr(PeriodicCheckpoint, "on_train_batch_start", request_during_step_3)
    run_dir = tmp_path / "run"
    config = tiny_config(run_dir, pretrain_data, trainer={"max_steps": 8},
                         checkpoint={"every_n_steps": 100, "save_at_end": False})
    assert run(["--config", str(config)]) == 0
    assert [p.name for p in complete_checkpoints(run_dir)] == ["step-000003"]
    assert read_checkpoint_meta(run_dir / "checkpoints" / "last")["samples_consumed"] == 3 * 8
