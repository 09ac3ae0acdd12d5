"""Float8 training (torchao) converts the block linears and keeps the LM head in high precision.

Tolerance (CUDA): float8 e4m3 matmuls vs bf16 autocast, loss within 5% on the first step.
"""

import pytest
import torch
from torch import nn

from model import Llama, LlamaConfig
from pretrain.errors import PretrainError
from pretrain.float8 import apply_float8, float8_filter


def test_float8_filter_takes_block_linears_with_aligned_dims_but_not_the_head():
    assert float8_filter(nn.Linear(64, 256), "layers.0.feed_forward.w1")
    assert not float8_filter(nn.Linear(64, 4096), "output")
    assert not float8_filter(nn.Linear(64, 100), "layers.0.attention.wk")  # 100 % 16 != 0
    assert not float8_filter(nn.LayerNorm(64), "norm")


def test_float8_on_cpu_is_a_user_error():
    model = Llama(LlamaConfig.from_name("debug-100k"))
    with pytest.raises(PretrainError, match="float8 training needs an sm89\\+ GPU"):
        apply_float8(model, "cpu")


@pytest.mark.gpu
def test_cuda_float8_converts_block_linears_and_trains_close_to_bf16():
    pytest.importorskip("torchao")
    if torch.cuda.get_device_capability() < (8, 9):
        pytest.skip("float8 needs sm89+")
    config = LlamaConfig.from_name("debug-1m")
    reference = Llama(config).cuda()
    model = Llama(config).cuda()
    model.load_state_dict(reference.state_dict())
    assert apply_float8(model, "cuda") == 7 * config.n_layers  # wq wk wv wo w1 w2 w3
    assert type(model.output) is nn.Linear
    tokens = torch.randint(0, config.vocab_size, (4, 129), device="cuda")
    losses = []
    for m in (reference, model):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = m(tokens[:, :-1])
        loss = nn.functional.cross_entropy(logits.flatten(0, 1).float(), tokens[:, 1:].flatten())
        loss.backward()
        losses.append(loss.item())
    assert abs(losses[1] - losses[0]) <= 0.05 * losses[0]
