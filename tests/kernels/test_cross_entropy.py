"""Fused LM head + cross-entropy: same loss and gradients as the eager reference
`F.cross_entropy(hidden @ weight.T)`, without ever building the [tokens, vocab] logits.

Tolerances: float32 loss within 1e-5 relative, gradients within 1e-5 of the largest
reference gradient entry (the chunked sums run in a different order); bfloat16 inputs within
2e-2 relative of the float32 reference (bf16 has 8 bits of mantissa).
"""

import pytest
import torch
import torch.nn.functional as F

from model import ModelError
from model.kernels.cross_entropy import default_chunk_rows, linear_cross_entropy
from tests.kernels.memory import AllocationTracker

TOKENS, DIM, VOCAB = 300, 32, 1000


def make_inputs(dtype=torch.float32, ignored_every=7):
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(TOKENS, DIM, generator=generator).to(dtype).requires_grad_()
    weight = (torch.randn(VOCAB, DIM, generator=generator) * 0.2).to(dtype).requires_grad_()
    targets = torch.randint(0, VOCAB, (TOKENS,), generator=generator)
    targets[::ignored_every] = -100
    return hidden, weight, targets


def reference(hidden, weight, targets):
    hidden32 = hidden.detach().float().requires_grad_()
    weight32 = weight.detach().float().requires_grad_()
    loss = F.cross_entropy(hidden32 @ weight32.T, targets, ignore_index=-100)
    loss.backward()
    return loss.detach(), hidden32.grad, weight32.grad


def loss_and_grads(hidden, weight, targets, **kwargs):
    loss = linear_cross_entropy(hidden, weight, targets, **kwargs)
    loss.backward()
    return loss.detach(), hidden.grad, weight.grad


def assert_close_to(actual, expected, tolerance):
    scale = expected.abs().max().item()
    assert (actual.float() - expected).abs().max().item() <= tolerance * scale


@pytest.mark.parametrize("chunk_rows", [7, 128, TOKENS, 10_000])
def test_chunked_matches_reference_in_float32_for_any_chunking(chunk_rows):
    hidden, weight, targets = make_inputs()
    want_loss, want_hidden_grad, want_weight_grad = reference(hidden, weight, targets)
    loss, hidden_grad, weight_grad = loss_and_grads(hidden, weight, targets,
                                                    implementation="chunked", chunk_rows=chunk_rows)
    assert loss.dtype == torch.float32
    assert abs(loss.item() - want_loss.item()) <= 1e-5 * want_loss.item()
    assert_close_to(hidden_grad, want_hidden_grad, 1e-5)
    assert_close_to(weight_grad, want_weight_grad, 1e-5)


def test_chunked_gradients_scale_with_the_upstream_gradient():
    hidden, weight, targets = make_inputs()
    _, want_hidden_grad, want_weight_grad = reference(hidden, weight, targets)
    (3.0 * linear_cross_entropy(hidden, weight, targets, implementation="chunked")).backward()
    assert_close_to(hidden.grad, 3.0 * want_hidden_grad, 1e-5)
    assert_close_to(weight.grad, 3.0 * want_weight_grad, 1e-5)


def test_a_second_backward_through_the_same_loss_is_refused_not_silently_wrong():
    hidden, weight, targets = make_inputs()
    loss = linear_cross_entropy(hidden, weight, targets, implementation="chunked")
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="one backward per forward"):
        loss.backward()


def test_chunked_matches_reference_in_bfloat16():
    hidden, weight, targets = make_inputs(torch.bfloat16)
    want_loss, want_hidden_grad, want_weight_grad = reference(hidden, weight, targets)
    loss, hidden_grad, weight_grad = loss_and_grads(hidden, weight, targets,
                                                    implementation="chunked", chunk_rows=64)
    assert hidden_grad.dtype == weight_grad.dtype == torch.bfloat16
    assert abs(loss.item() - want_loss.item()) <= 2e-2 * want_loss.item()
    assert_close_to(hidden_grad, want_hidden_grad, 2e-2)
    assert_close_to(weight_grad, want_weight_grad, 2e-2)


def test_autocast_runs_the_head_in_bfloat16_and_returns_float32_grads_for_float32_weights():
    hidden, weight, targets = make_inputs()
    want_loss, _, want_weight_grad = reference(hidden, weight, targets)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = linear_cross_entropy(hidden, weight, targets, implementation="chunked")
    loss.backward()
    assert weight.grad.dtype == torch.float32
    assert abs(loss.item() - want_loss.item()) <= 2e-2 * want_loss.item()
    assert_close_to(weight.grad, want_weight_grad, 2e-2)


def test_under_no_grad_only_the_loss_is_computed():
    hidden, weight, targets = make_inputs()
    want_loss, _, _ = reference(hidden, weight, targets)
    with torch.no_grad(), AllocationTracker() as tracker:
        loss = linear_cross_entropy(hidden, weight, targets, implementation="chunked",
                                    chunk_rows=100)
    assert abs(loss.item() - want_loss.item()) <= 1e-5 * want_loss.item()
    # no gradient buffers: nothing of the weight's size [VOCAB, DIM] was allocated to keep
    assert tracker.live_bytes < VOCAB * DIM * 4


def test_all_targets_ignored_gives_nan_like_f_cross_entropy():
    hidden, weight, targets = make_inputs()
    targets[:] = -100
    assert torch.isnan(linear_cross_entropy(hidden, weight, targets, implementation="chunked"))
    assert torch.isnan(F.cross_entropy(hidden @ weight.T, targets))


def test_batched_hidden_states_are_flattened_like_the_model_output():
    hidden, weight, targets = make_inputs()
    want = linear_cross_entropy(hidden, weight, targets, implementation="eager")
    got = linear_cross_entropy(hidden.view(3, 100, DIM), weight, targets.view(3, 100),
                               implementation="chunked")
    assert abs(got.item() - want.item()) <= 1e-5 * want.item()


def test_chunked_never_allocates_the_full_logits_and_peaks_far_below_eager():
    tokens, dim, vocab, chunk_rows = 2048, 64, 4096, 256
    hidden = torch.randn(tokens, dim, requires_grad=True)
    weight = (torch.randn(vocab, dim) * 0.05).requires_grad_()
    targets = torch.randint(0, vocab, (tokens,))
    peaks, largest = {}, {}
    for implementation in ("eager", "chunked"):
        with AllocationTracker() as tracker:
            linear_cross_entropy(hidden, weight, targets, implementation=implementation,
                                 chunk_rows=chunk_rows).backward()
        peaks[implementation], largest[implementation] = tracker.peak_bytes, tracker.largest_numel
    logits_bytes = tokens * vocab * 4
    assert largest["eager"] == tokens * vocab  # the probe sees the full logits when they exist
    assert largest["chunked"] <= chunk_rows * vocab
    # chunk logits + their softmax gradient, plus the gradient buffers; eager holds >= 2 logits
    assert peaks["chunked"] <= 2 * chunk_rows * vocab * 4 + (tokens + vocab) * dim * 4 * 2
    assert peaks["eager"] >= 2 * logits_bytes
    assert peaks["chunked"] * 8 < peaks["eager"]


def test_default_chunking_bounds_chunk_logits_by_the_hidden_states_above_a_minimum():
    # tinyllama, micro-batch 8 x 2048: 16 chunks of 1024 rows; [1024, 32000] fp32 = 131 MB
    assert default_chunk_rows(16384, 2048, 32000) == 1024
    assert default_chunk_rows(100, 64, 32000) == 100  # fewer tokens than the minimum: one chunk
    assert default_chunk_rows(65536, 2048, 32000) == 4096


def test_unknown_implementation_is_a_model_error():
    hidden, weight, targets = make_inputs()
    with pytest.raises(ModelError, match="unknown fused cross-entropy implementation 'fast'"):
        linear_cross_entropy(hidden, weight, targets, implementation="fast")


def test_liger_on_cpu_is_a_model_error_naming_the_cpu_choice(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)  # which lets liger run on the CPU
    hidden, weight, targets = make_inputs()
    with pytest.raises(ModelError, match="needs CUDA.*chunked"):
        linear_cross_entropy(hidden, weight, targets, implementation="liger")


def test_auto_is_chunked_on_cpu():
    hidden, weight, targets = make_inputs()
    want_loss, want_hidden_grad, _ = reference(hidden, weight, targets)
    loss, hidden_grad, _ = loss_and_grads(hidden, weight, targets, implementation="auto")
    assert abs(loss.item() - want_loss.item()) <= 1e-5 * want_loss.item()
    assert_close_to(hidden_grad, want_hidden_grad, 1e-5)


@pytest.mark.gpu
def test_cuda_bfloat16_chunked_matches_float32_reference():  # liger's: tests/kernels/liger
    implementation = "chunked"
    hidden, weight, targets = make_inputs(torch.bfloat16)
    want_loss, want_hidden_grad, want_weight_grad = reference(hidden, weight, targets)
    hidden = hidden.detach().cuda().requires_grad_()
    weight = weight.detach().cuda().requires_grad_()
    loss, hidden_grad, weight_grad = loss_and_grads(hidden, weight, targets.cuda(),
                                                    implementation=implementation)
    assert abs(loss.item() - want_loss.item()) <= 2e-2 * want_loss.item()
    assert_close_to(hidden_grad.cpu(), want_hidden_grad, 2e-2)
    assert_close_to(weight_grad.cpu(), want_weight_grad, 2e-2)
