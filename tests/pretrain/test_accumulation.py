"""Gradient accumulation is exactly a bigger batch: micro 4 × 2 accumulated == micro 8 × 1."""

import torch

from tests.fixtures.pretrain import metrics_losses, tiny_config


def _one_step(run_dir, data, micro_batch_size):
    from pretrain.commands.pretrain import run

    # AdamW with eps=1 makes the first update ≈ lr·g (linear in the gradient), so equal weights
    # after the step mean equal gradients; with a tiny eps, g/(|g|+eps) would amplify fp32
    # rounding of near-zero gradients to ~1e-5 and hide what is being compared.
    config = tiny_config(run_dir, data, trainer={"max_steps": 1},
                         model={"eps": 1.0, "lr": 1.0, "warmup_steps": 0, "weight_decay": 0.0},
                         data={"micro_batch_size": micro_batch_size, "global_batch_tokens": 256})
    assert run(["--config", str(config)]) == 0
    state = torch.load(run_dir / "checkpoints" / "step-000001" / "lightning.ckpt", weights_only=True)
    return metrics_losses(run_dir)[1], metrics_losses(run_dir, "grad_norm")[1], state["state_dict"]


def test_two_accumulated_micro_batches_equal_one_batch_of_both(pretrain_data, tmp_path):
    loss_acc, norm_acc, weights_acc = _one_step(tmp_path / "accumulated", pretrain_data, 4)
    loss_one, norm_one, weights_one = _one_step(tmp_path / "single", pretrain_data, 8)
    assert abs(loss_acc - loss_one) <= 1e-6
    assert abs(norm_acc - norm_one) <= 1e-6 * norm_one
    for name, value in weights_one.items():
        torch.testing.assert_close(weights_acc[name], value, rtol=0, atol=1e-6, msg=name)

    from model import Llama, LlamaConfig

    initial = Llama(LlamaConfig.from_name("debug-100k", vocab_size=1024))
    torch.manual_seed(7)  # the fixture's seed_everything, which seeds the initialisation
    initial.init_weights()
    moved = weights_one["model.layers.0.attention.wq.weight"] - initial.layers[0].attention.wq.weight
    assert moved.abs().max() > 1e-3  # the step changed the weights: the comparison is not vacuous
