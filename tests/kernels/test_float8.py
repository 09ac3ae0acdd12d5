"""Float8 training (torchao) converts the block linears, keeps the LM head in high precision,
and trains close to bf16. torch's CPU float8 matmul (`_scaled_mm`) runs the same Float8Linear
code as an H100, so the conversion is tested here on the CPU; the device check refuses anything
but an sm89+ GPU for real runs.

Tolerance: float8 matmuls (e4m3 forward, e5m2 gradients) vs bf16 autocast on the first step:
loss within 2%; every parameter's gradient at cosine similarity >= 0.9 to the reference's (at
initialisation the small q/k gradients are ~25% float8 noise in norm, cosine ~0.97; a wrong
layout or scale would be near 0).
"""

import pytest
import torch
from torch import nn

from model import Llama, LlamaConfig
from pretrain.errors import PretrainError
from pretrain.training.float8 import check_float8_device, convert_to_float8, float8_filter


def test_float8_filter_takes_block_linears_with_aligned_dims_but_not_the_head():
    assert float8_filter(nn.Linear(64, 256), "layers.0.feed_forward.w1")
    assert not float8_filter(nn.Linear(64, 4096), "output")
    assert not float8_filter(nn.Linear(64, 100), "layers.0.attention.wk")  # 100 % 16 != 0
    assert not float8_filter(nn.LayerNorm(64), "norm")


def test_float8_on_cpu_is_a_user_error_naming_the_option():
    with pytest.raises(PretrainError, match=r"float8 training needs an sm89\+ GPU.*\(--fp8\)"):
        check_float8_device("cpu", "--fp8")


def first_step(model, tokens, device_type):
    model.zero_grad(set_to_none=True)
    with torch.autocast(device_type, dtype=torch.bfloat16):
        logits = model(tokens[:, :-1])
    loss = nn.functional.cross_entropy(logits.flatten(0, 1).float(), tokens[:, 1:].flatten())
    loss.backward()
    return loss.item()


def assert_float8_trains_close_to_bf16(device):
    pytest.importorskip("torchao")
    config = LlamaConfig.from_name("debug-1m")
    reference = Llama(config).to(device)
    model = Llama(config).to(device)
    model.load_state_dict(reference.state_dict())
    assert convert_to_float8(model) == 7 * config.n_layers  # wq wk wv wo w1 w2 w3 per block
    assert type(model.layers[0].attention.wq).__name__ == "Float8Linear"
    assert type(model.output) is nn.Linear
    tokens = torch.randint(0, config.vocab_size, (4, 129), device=device)
    want, got = first_step(reference, tokens, device.type), first_step(model, tokens, device.type)
    assert abs(got - want) <= 0.02 * want
    for name, parameter in model.named_parameters():
        want_grad = reference.get_parameter(name).grad.flatten().float()
        cosine = nn.functional.cosine_similarity(parameter.grad.flatten().float(), want_grad, dim=0)
        assert cosine >= 0.9, (name, cosine.item())


def test_float8_conversion_trains_close_to_bf16_on_the_cpu_float8_matmul():
    assert_float8_trains_close_to_bf16(torch.device("cpu"))


@pytest.mark.gpu
def test_cuda_float8_converts_block_linears_and_trains_close_to_bf16():
    pytest.importorskip("torchao")  # before the device check: the GPU image may lack it
    if torch.cuda.get_device_capability() < (8, 9):
        pytest.skip("float8 needs sm89+")
    check_float8_device("cuda", "--fp8")
    assert_float8_trains_close_to_bf16(torch.device("cuda"))
