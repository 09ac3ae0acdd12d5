"""The training and validation loss come from the fused LM head + cross-entropy
(`model.fused_ce`): the chunked kernel trains exactly like the full-logits (eager) path and
never runs the LM head on all tokens."""

import pytest
import torch

from tests.fixtures.pretrain import TINY_VOCAB, assert_same_losses, metrics_losses, tiny_config


def _losses(run_dir, data, fused_ce):
    from pretrain.commands.pretrain import run

    config = tiny_config(run_dir, data, trainer={"max_steps": 3},
                         model={"fused_ce": fused_ce}, data={"val_every_n_steps": 3},
                         checkpoint={"every_n_steps": 3})
    assert run(["--config", str(config)]) == 0
    return metrics_losses(run_dir), metrics_losses(run_dir, "val_loss")


def test_chunked_fused_loss_trains_like_the_full_logits_loss(pretrain_data, tmp_path):
    chunked, val_chunked = _losses(tmp_path / "chunked", pretrain_data, "chunked")
    eager, val_eager = _losses(tmp_path / "eager", pretrain_data, "eager")
    assert_same_losses(chunked, eager, [1, 2, 3], 1e-5)
    assert chunked[3] < chunked[1] - 1e-3  # the steps changed the model: not a vacuous match
    assert 3 in val_eager and abs(val_chunked[3] - val_eager[3]) <= 1e-5


def _module_with_model(fused_ce):
    from model import Llama
    from pretrain.training.module import PretrainModule

    module = PretrainModule(preset="debug-100k", vocab_size=TINY_VOCAB, fused_ce=fused_ce)
    torch.manual_seed(0)
    module.model = Llama(module.model_config)
    return module


def test_the_chunked_loss_never_runs_the_lm_head_on_all_tokens():
    module = _module_with_model("chunked")
    calls = []
    module.model.output.register_forward_hook(lambda *args: calls.append(1))
    batch = {"input_ids": torch.randint(0, TINY_VOCAB, (2, 16)),
             "labels": torch.randint(0, TINY_VOCAB, (2, 16))}
    loss = module.loss(batch)
    loss.backward()
    assert calls == []  # no [tokens, vocab] logits from model.output
    reference = torch.nn.functional.cross_entropy(
        module.model(batch["input_ids"]).flatten(0, 1), batch["labels"].flatten())
    torch.testing.assert_close(loss, reference, rtol=0, atol=1e-5)
    assert module.model.output.weight.grad.abs().max() > 0  # the head (tied) gets its gradient


def test_an_unknown_fused_ce_is_a_user_error():
    from pretrain.errors import PretrainError
    from pretrain.training.module import PretrainModule

    with pytest.raises(PretrainError, match=r"fused_ce .*'fast'.*model\.fused_ce"):
        PretrainModule(preset="debug-100k", fused_ce="fast")
