"""Float8 in training (`model.float8`): converted before activation checkpointing, whose
selective policy keeps the float8 matmuls' outputs; refused off an sm89+ GPU before any work
(tests/pretrain/test_bad_input.py). The CPU float8 matmul stands in for an H100's here."""

import pytest
import torch

from model import LlamaConfig
from pretrain.training.parallelize import build_parallel_model

pytest.importorskip("torchao")


def _grads(activation_checkpointing):
    model = build_parallel_model(LlamaConfig.from_name("debug-1m"),
                                 torch.device("cpu"), init_seed=0,
                                 float8=True, activation_checkpointing=activation_checkpointing)
    tokens = torch.randint(0, 4096, (2, 65), generator=torch.Generator().manual_seed(0))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(tokens[:, :-1])
    torch.nn.functional.cross_entropy(logits.flatten(0, 1).float(), tokens[:, 1:].flatten()).backward()
    return model, {name.replace("._checkpoint_wrapped_module", ""): p.grad
                   for name, p in model.named_parameters()}


@pytest.mark.parametrize("activation_checkpointing", ["full", "selective"])
def test_float8_blocks_under_activation_checkpointing_give_the_gradients_without_it(activation_checkpointing):
    model, got = _grads(activation_checkpointing)
    inner = model.layers[0]._checkpoint_wrapped_module
    assert type(inner.attention.wq).__name__ == type(inner.feed_forward.w2).__name__ == "Float8Linear"
    _, want = _grads("none")
    assert got.keys() == want.keys()
    for name, grad in want.items():
        torch.testing.assert_close(got[name], grad, rtol=0, atol=1e-6, msg=name)
