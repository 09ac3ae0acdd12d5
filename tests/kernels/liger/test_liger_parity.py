"""liger-kernel's kernels, called through our seams, against the eager math of model/llama.py:
forward values and gradients, each op alone and a whole training step.

Tolerances (relative to the largest entry of the float32 eager reference): float32 under
Triton's interpreter on the CPU within 1e-5 per op, 1e-4 for a model's gradients (a few
layers of differently ordered sums); bf16 on CUDA within 2e-2 per op, 5e-2 for a model.
"""

import pytest
import torch
import torch.nn.functional as F

from model import Llama, LlamaConfig
from model.kernels.cross_entropy import linear_cross_entropy
from model.kernels.fused_ops import apply_fused_ops, eager_silu_mul, resolve_fused_ops
from model.llama import RMSNorm, RotaryEmbedding, apply_rotary
from pretrain.training.parallelize import apply_activation_checkpointing


def assert_close(got, want, tolerance):
    scale = want.abs().max().item()
    error = (got.float().cpu() - want.float().cpu()).abs().max().item()
    assert error <= tolerance * scale, f"max |Δ| {error:.3g} > {tolerance} × {scale:.3g}"


def leaf(shape, target, scale=1.0):
    """A random leaf in the target's dtype and device, and its float32 copy for the reference."""
    x = (torch.randn(shape) * scale).to(target.device, target.dtype).requires_grad_()
    return x, x.detach().float().requires_grad_()


def test_rms_norm_matches_eager_forward_and_backward(target):
    ops = resolve_fused_ops("liger", target.device)
    norm = RMSNorm(256, 1e-5).to(target.device)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
    weight32 = norm.weight.detach().float().requires_grad_()
    x, x32 = leaf((4, 64, 256), target)
    want = weight32 * F.rms_norm(x32, (256,), eps=1e-5)
    (want.square().sum() + want.sum()).backward()
    got = ops.rms_norm(x, norm.weight, 1e-5)
    (got.float().square().sum() + got.float().sum()).backward()
    assert got.dtype == x.dtype
    assert_close(got, want, target.tolerance)
    assert_close(x.grad, x32.grad, target.tolerance)
    assert_close(norm.weight.grad, weight32.grad, target.tolerance)


def test_rotary_matches_eager_forward_and_backward_with_gqa(target):
    ops = resolve_fused_ops("liger", target.device)
    cos, sin = RotaryEmbedding(64, 128, 10000.0).to(target.device)(start_pos=16, seq_len=64)
    q, q32 = leaf((2, 64, 8, 64), target)
    k, k32 = leaf((2, 64, 2, 64), target)
    want_q, want_k = apply_rotary(q32, cos, sin), apply_rotary(k32, cos, sin)
    (want_q.square().sum() + want_k.square().sum() + want_q.sum()).backward()
    q_before, k_before = q.detach().clone(), k.detach().clone()
    got_q, got_k = ops.rotary(q, k, cos, sin)
    (got_q.float().square().sum() + got_k.float().square().sum() + got_q.float().sum()).backward()
    assert got_q.shape == q.shape and got_k.shape == k.shape
    # liger_rope works in place; our seam must leave its inputs alone (see the AC test below)
    assert torch.equal(q.detach(), q_before) and torch.equal(k.detach(), k_before)
    for got, want in [(got_q, want_q), (got_k, want_k), (q.grad, q32.grad), (k.grad, k32.grad)]:
        assert_close(got, want, target.tolerance)


def test_silu_mul_matches_eager_forward_and_backward(target):
    ops = resolve_fused_ops("liger", target.device)
    gate, gate32 = leaf((4, 64, 512), target)
    up, up32 = leaf((4, 64, 512), target)
    want = eager_silu_mul(gate32, up32)
    want.square().sum().backward()
    got = ops.silu_mul(gate, up)
    got.float().square().sum().backward()
    for got, want in [(got, want), (gate.grad, gate32.grad), (up.grad, up32.grad)]:
        assert_close(got, want, target.tolerance)


def test_fused_linear_cross_entropy_matches_eager_with_ignored_targets(target):
    hidden, hidden32 = leaf((300, 32), target)
    weight, weight32 = leaf((1000, 32), target, scale=0.2)
    targets = torch.randint(0, 1000, (300,))
    targets[::7] = -100
    want = F.cross_entropy(hidden32 @ weight32.T, targets, ignore_index=-100)
    want.backward()
    got = linear_cross_entropy(hidden, weight, targets.to(target.device), implementation="liger")
    got.backward()
    assert got.dtype == torch.float32
    assert abs(got.item() - want.item()) <= target.tolerance * want.item()
    assert_close(hidden.grad, hidden32.grad, target.tolerance)
    assert_close(weight.grad, weight32.grad, target.tolerance)


# debug-100k: tied head, GQA 4:2; debug-1m (its vocabulary cut, the interpreter is slow): untied,
# 4:1. Selective activation checkpointing caches the projections' outputs for the recompute: a
# kernel that wrote into them (liger_rope does, given the chance) would corrupt the gradients.
@pytest.mark.parametrize("config_name, ac", [("debug-100k", "none"), ("debug-1m", "none"),
                                             ("debug-100k", "full"), ("debug-100k", "selective")])
def test_training_step_of_a_liger_model_matches_the_eager_model(target, config_name, ac):
    config = LlamaConfig.from_name(config_name, vocab_size=512)
    reference = Llama(config).to(target.device)
    fused = Llama(config).to(target.device)
    fused.load_state_dict(reference.state_dict())
    assert apply_fused_ops(fused, "liger").name == "liger"
    apply_activation_checkpointing(fused, ac)
    input_ids = torch.randint(0, config.vocab_size, (2, 24), device=target.device)
    labels = torch.roll(input_ids, -1, dims=1)

    def loss_of(model, implementation):
        hidden = model.forward_hidden(input_ids)
        return linear_cross_entropy(hidden, model.output.weight, labels,
                                    implementation=implementation)

    want = loss_of(reference, "eager")
    want.backward()
    with torch.autocast(target.device, dtype=target.dtype, enabled=target.dtype != torch.float32):
        got = loss_of(fused, "liger")
    got.backward()
    model_tolerance = 10 * target.tolerance if target.dtype == torch.float32 else 5e-2
    assert abs(got.item() - want.item()) <= model_tolerance * want.item()
    reference_grads = dict(reference.named_parameters())
    for name, parameter in fused.named_parameters():
        want_grad = reference_grads[name.replace("._checkpoint_wrapped_module", "")].grad
        assert_close(parameter.grad, want_grad, model_tolerance)


def test_greedy_generation_with_a_kv_cache_matches_the_eager_model(target):
    from model.generate import generate

    config = LlamaConfig.from_name("debug-100k")
    reference = Llama(config).to(target.device).eval()
    fused = Llama(config).to(target.device).eval()
    fused.load_state_dict(reference.state_dict())
    apply_fused_ops(fused, "liger")
    prompt = torch.randint(0, config.vocab_size, (1, 6), device=target.device)
    # float32 on either device: greedy tokens of a random model flip on bf16 rounding
    want = generate(reference, prompt, max_new_tokens=8, temperature=0)
    got = generate(fused, prompt, max_new_tokens=8, temperature=0)
    assert torch.equal(got, want)  # rotary at every cache position (start_pos > 0)
