"""Fused RMSNorm / rotary / SwiGLU: swapped into a built Llama without changing its weights,
and computing the eager math of model/llama.py.

Tolerances: float32 on CPU within 1e-5 (logits) / 1e-5 relative (gradients); bf16 autocast on
CUDA within 3e-2 of the largest reference value. liger-kernel's kernels: tests/kernels/liger.
"""

import pytest
import torch

from model import Llama, LlamaConfig, ModelError
from model.kernels.fused_ops import (FusedOps, apply_fused_ops, eager_rotary, eager_silu_mul,
                                     resolve_fused_ops, torch_rms_norm)
from model.llama import RMSNorm


def pair(config_name="debug-100k", **overrides):
    """Two identical models (same weights); the second one to be fused."""
    config = LlamaConfig.from_name(config_name, **overrides)
    reference = Llama(config)
    fused = Llama(config)
    fused.load_state_dict(reference.state_dict())
    return reference, fused


def logits_and_grads(model, input_ids):
    model.zero_grad(set_to_none=True)
    logits = model(input_ids)
    logits.float().square().mean().backward()
    return logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


def assert_same_training_step(reference, fused, tolerance):
    input_ids = torch.randint(0, reference.config.vocab_size, (2, 48))
    want_logits, want_grads = logits_and_grads(reference, input_ids)
    got_logits, got_grads = logits_and_grads(fused, input_ids)
    assert (got_logits - want_logits).abs().max().item() <= tolerance
    for name, want in want_grads.items():
        scale = want.abs().max().item()
        assert (got_grads[name] - want).abs().max().item() <= tolerance * scale, name


def test_torch_rms_norm_model_matches_eager_in_float32():
    reference, fused = pair()
    assert apply_fused_ops(fused, "torch").name == "torch"
    assert type(fused.norm).__name__ == "FusedRMSNorm_torch"
    assert_same_training_step(reference, fused, 1e-5)


def test_fusing_keeps_parameters_state_dict_and_module_types():
    reference, fused = pair()
    apply_fused_ops(fused, "torch")
    assert fused.state_dict().keys() == reference.state_dict().keys()
    assert all(torch.equal(fused.state_dict()[k], v) for k, v in reference.state_dict().items())
    assert isinstance(fused.layers[0].attention_norm, RMSNorm)  # a subclass: code that checks types still works


def test_every_seam_calls_its_kernel_once_per_layer():
    calls = {"rms_norm": 0, "rotary": 0, "silu_mul": 0}

    def counting(name, kernel):
        def run(*args):
            calls[name] += 1
            return kernel(*args)
        return run

    reference, fused = pair()
    apply_fused_ops(fused, FusedOps("counting", counting("rms_norm", torch_rms_norm),
                                    counting("rotary", eager_rotary),
                                    counting("silu_mul", eager_silu_mul)))
    assert_same_training_step(reference, fused, 1e-5)
    n_layers = reference.config.n_layers
    assert calls == {"rms_norm": 2 * n_layers + 1, "rotary": n_layers, "silu_mul": n_layers}


def test_generation_with_a_kv_cache_runs_through_the_fused_rotary():
    from model.generate import generate

    reference, fused = pair()
    apply_fused_ops(fused, FusedOps("eager-rotary", rotary=eager_rotary))
    prompt = torch.randint(0, reference.config.vocab_size, (1, 5))
    want = generate(reference.eval(), prompt, max_new_tokens=8, temperature=0)
    assert torch.equal(generate(fused.eval(), prompt, max_new_tokens=8, temperature=0), want)


def test_none_changes_nothing():
    _, fused = pair()
    apply_fused_ops(fused, "none")
    assert type(fused.norm) is RMSNorm


def test_auto_is_none_on_cpu_and_liger_needs_cuda(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)  # which lets liger run on the CPU
    assert resolve_fused_ops("auto", "cpu").name == "none"
    with pytest.raises(ModelError, match="'liger' need CUDA"):
        resolve_fused_ops("liger", "cpu")
    with pytest.raises(ModelError, match="unknown fused ops 'fast'"):
        resolve_fused_ops("fast", "cpu")


def test_torch_rms_norm_matches_the_model_norm_in_float32():
    norm = RMSNorm(64, 1e-5)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
    x = torch.randn(3, 7, 64)
    assert (torch_rms_norm(x, norm.weight, 1e-5) - norm(x)).abs().max().item() <= 1e-6


# --- CUDA (liger-kernel's kernels have their own folder: tests/kernels/liger) ------------------

def _close(got, want, tolerance=2e-2):
    assert (got.float() - want.float()).abs().max().item() <= tolerance * want.abs().max().item()


@pytest.mark.gpu
def test_cuda_torch_fused_model_matches_eager_model_in_bf16_autocast():
    reference, fused = (m.cuda() for m in pair("debug-1m"))
    apply_fused_ops(fused, "torch")
    input_ids = torch.randint(0, reference.config.vocab_size, (2, 128), device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        want, got = reference(input_ids).float(), fused(input_ids).float()
    _close(got, want, 3e-2)
