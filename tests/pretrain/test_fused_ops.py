"""Fused RMSNorm / rotary / SwiGLU in training (`model.fused_ops`): swapped in before
activation checkpointing, and training like the eager model. On a CPU the `torch` kernels
stand in for liger's (whose parity, with checkpointing, is tested in tests/kernels/liger)."""

import pytest
import torch

from model import LlamaConfig
from pretrain.errors import PretrainError
from pretrain.training.module import PretrainModule
from pretrain.training.parallelize import build_parallel_model
from tests.fixtures.pretrain import assert_same_losses, metrics_losses, tiny_config


def test_fused_ops_are_swapped_into_every_block_under_activation_checkpointing():
    model = build_parallel_model(LlamaConfig.from_name("debug-100k"),
                                 torch.device("cpu"), init_seed=0,
                                 fused_ops="torch", activation_checkpointing="selective")
    assert type(model.norm).__name__ == "FusedRMSNorm_torch"
    for block in model.layers:
        assert type(block).__name__ == "CheckpointWrapper"
        inner = block._checkpoint_wrapped_module
        assert type(inner.attention_norm).__name__ == type(inner.ffn_norm).__name__ == "FusedRMSNorm_torch"


def test_training_with_fused_ops_gives_the_losses_of_the_eager_model(pretrain_data, tmp_path):
    from pretrain.commands.pretrain import run

    losses = {}
    for fused_ops in ("none", "torch"):
        config = tiny_config(tmp_path / fused_ops, pretrain_data, trainer={"max_steps": 3},
                             model={"fused_ops": fused_ops, "activation_checkpointing": "selective"})
        assert run(["--config", str(config)]) == 0
        losses[fused_ops] = metrics_losses(tmp_path / fused_ops)
    assert_same_losses(losses["torch"], losses["none"], [1, 2, 3], 1e-5)
    assert losses["torch"][3] < losses["torch"][1] - 1e-3  # it trained: not a vacuous match


def test_an_unknown_fused_ops_is_a_user_error():
    with pytest.raises(PretrainError, match=r"fused_ops .*'fastest'.*model\.fused_ops"):
        PretrainModule(preset="debug-100k", fused_ops="fastest")
