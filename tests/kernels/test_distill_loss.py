"""Chunked distillation losses: same values and gradients as an eager reference on full logits
(`F.kl_div` over `log_softmax`), without ever building the [tokens, vocab] logits.

Tolerances: float64 within 1e-9 (relative to the largest reference value or gradient entry;
only the summation order differs); float32 within 1e-5 of the same scale; bfloat16 heads
under autocast within 2e-2 (8 bits of mantissa).
"""

import math

import pytest
import torch
import torch.nn.functional as F

from model import ModelError
from model.kernels.distill import linear_distill_loss, topk_distill_loss
from tests.kernels.memory import AllocationTracker

TOKENS, DIM, TEACHER_DIM, VOCAB, K = 120, 16, 24, 200, 8


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny matmuls run faster on one thread than on two cores other tests also use."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def make_inputs(dtype=torch.float64, ignored_every=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(TOKENS, DIM, generator=g).to(dtype).requires_grad_()
    weight = (torch.randn(VOCAB, DIM, generator=g) * 0.5).to(dtype).requires_grad_()
    labels = torch.randint(0, VOCAB, (TOKENS,), generator=g)
    labels[::ignored_every] = -100
    teacher_hidden = torch.randn(TOKENS, TEACHER_DIM, generator=g).to(dtype)
    teacher_weight = (torch.randn(VOCAB, TEACHER_DIM, generator=g) * 0.5).to(dtype)
    return hidden, weight, labels, teacher_hidden, teacher_weight


def fresh(tensor):
    return tensor.detach().clone().requires_grad_()


def eager_online(hidden, weight, labels, teacher_hidden, teacher_weight, alpha, temperature):
    """(loss, ce, kl) from full logits with F.cross_entropy and F.kl_div."""
    logits = hidden @ weight.T
    teacher_logits = teacher_hidden @ teacher_weight.T
    valid = labels != -100
    ce = F.cross_entropy(logits, labels, ignore_index=-100)
    kl_rows = F.kl_div(F.log_softmax(logits / temperature, -1),
                       F.log_softmax(teacher_logits / temperature, -1),
                       log_target=True, reduction="none").sum(-1)
    kl = kl_rows[valid].mean()
    return (1 - alpha) * ce + alpha * temperature ** 2 * kl, ce, kl


def eager_topk(hidden, weight, labels, logprobs, ids, alpha, temperature):
    """The K + 1-event KL from full logits: the teacher's other-mass spread evenly over the
    other ids (maximum entropy), tempered id by id, then both distributions coarsened."""
    logits = hidden @ weight.T
    n, vocab = logits.shape
    others = vocab - ids.shape[1]
    other_mass = 1 - logprobs.exp().sum(-1, keepdim=True)
    teacher_full = (other_mass / others).expand(n, vocab).clone()
    teacher_full.scatter_(1, ids, logprobs.exp())
    teacher_t = F.softmax(teacher_full.log() / temperature, -1)
    student_t = F.softmax(logits / temperature, -1)
    in_top = torch.zeros(n, vocab, dtype=torch.bool).scatter_(1, ids, True)

    def buckets(p):  # [n, K + 1]: the K ids, then everything else
        return torch.cat([p.gather(1, ids), (p * ~in_top).sum(-1, keepdim=True)], -1)

    q, p = buckets(teacher_t), buckets(student_t)
    kl_rows = F.kl_div(p.log(), q, reduction="none").sum(-1)
    valid = labels != -100
    ce = F.cross_entropy(logits, labels, ignore_index=-100)
    kl = kl_rows[valid].mean()
    return (1 - alpha) * ce + alpha * temperature ** 2 * kl, ce, kl


def teacher_topk(teacher_hidden, teacher_weight, k):
    """The cache's content: top-K log-probabilities at T = 1 and their ids."""
    logprobs = F.log_softmax(teacher_hidden @ teacher_weight.T, -1)
    return logprobs.topk(k, dim=-1)


def assert_close(actual, expected, tolerance):
    scale = max(expected.abs().max().item(), 1e-30)
    assert (actual - expected).abs().max().item() <= tolerance * scale, (actual, expected)


def run(loss_fn, hidden, weight, *args, **kwargs):
    hidden, weight = fresh(hidden), fresh(weight)
    loss, ce, kl = loss_fn(hidden, weight, *args, **kwargs)
    loss.backward()
    return loss.detach(), ce, kl, hidden.grad, weight.grad


@pytest.mark.parametrize("temperature", [1.0, 2.5])
@pytest.mark.parametrize("chunk_size", [7, 50, 10_000])
def test_online_loss_and_gradients_match_eager_kl_div_in_float64(temperature, chunk_size):
    hidden, weight, labels, teacher_hidden, teacher_weight = make_inputs()
    want = run(eager_online, hidden, weight, labels, teacher_hidden, teacher_weight, 0.4,
               temperature)
    got = run(linear_distill_loss, hidden, weight, labels, teacher_hidden, teacher_weight,
              alpha=0.4, temperature=temperature, chunk_size=chunk_size)
    for actual, expected in zip(got, want):
        assert_close(actual.double(), expected, 1e-9)


def test_online_matches_eager_in_float32():
    inputs = make_inputs(torch.float32)
    want = run(eager_online, *inputs, 0.5, 2.0)
    got = run(linear_distill_loss, *inputs, alpha=0.5, temperature=2.0, chunk_size=32)
    assert got[0].dtype == torch.float32
    for actual, expected in zip(got, want):
        assert_close(actual, expected, 1e-5)


def test_alpha_zero_is_exactly_the_cross_entropy():
    hidden, weight, labels, teacher_hidden, teacher_weight = make_inputs()
    loss, ce, _, hidden_grad, weight_grad = run(
        linear_distill_loss, hidden, weight, labels, teacher_hidden, teacher_weight, alpha=0.0,
        temperature=3.0, chunk_size=50)
    _, _, _, want_hidden_grad, want_weight_grad = run(
        lambda h, w, t: (F.cross_entropy(h @ w.T, t, ignore_index=-100),) * 3,
        hidden, weight, labels)
    want_ce = F.cross_entropy(hidden @ weight.T, labels, ignore_index=-100)
    assert_close(loss, want_ce, 1e-12)
    assert_close(ce, want_ce, 1e-12)
    assert_close(hidden_grad, want_hidden_grad, 1e-9)
    assert_close(weight_grad, want_weight_grad, 1e-9)


def test_a_teacher_identical_to_the_student_adds_zero_kl_and_zero_kl_gradient():
    hidden, weight, labels, _, _ = make_inputs()
    _, ce, kl, hidden_grad, weight_grad = run(
        linear_distill_loss, hidden, weight, labels, hidden.detach(), weight.detach(),
        alpha=0.5, temperature=2.0, chunk_size=50)
    _, _, _, ce_hidden_grad, ce_weight_grad = run(
        lambda h, w, t: (F.cross_entropy(h @ w.T, t, ignore_index=-100),) * 3,
        hidden, weight, labels)
    assert abs(kl.item()) < 1e-12
    assert_close(hidden_grad, 0.5 * ce_hidden_grad, 1e-9)
    assert_close(weight_grad, 0.5 * ce_weight_grad, 1e-9)


@pytest.mark.parametrize("temperature", [1.0, 0.5, 2.0])
def test_topk_loss_and_gradients_match_the_eager_other_bucket_reference(temperature):
    hidden, weight, labels, teacher_hidden, teacher_weight = make_inputs()
    logprobs, ids = teacher_topk(teacher_hidden, teacher_weight, K)
    want = run(eager_topk, hidden, weight, labels, logprobs, ids, 0.7, temperature)
    got = run(topk_distill_loss, hidden, weight, labels, logprobs, ids, alpha=0.7,
              temperature=temperature, chunk_size=13)
    for actual, expected in zip(got, want):
        assert_close(actual.double(), expected, 1e-9)


@pytest.mark.parametrize("temperature", [1.0, 3.0])
def test_topk_over_the_whole_vocabulary_is_the_online_loss(temperature):
    hidden, weight, labels, teacher_hidden, teacher_weight = make_inputs()
    logprobs, ids = teacher_topk(teacher_hidden, teacher_weight, VOCAB)
    want = run(linear_distill_loss, hidden, weight, labels, teacher_hidden, teacher_weight,
               alpha=0.5, temperature=temperature)
    got = run(topk_distill_loss, hidden, weight, labels, logprobs, ids, alpha=0.5,
              temperature=temperature, chunk_size=40)
    for actual, expected in zip(got, want):
        assert_close(actual, expected, 1e-9)


def test_topk_reads_16_bit_log_probs_and_ids_as_the_cache_stores_them():
    hidden, weight, labels, teacher_hidden, teacher_weight = make_inputs(torch.float32)
    logprobs, ids = teacher_topk(teacher_hidden, teacher_weight, K)
    stored = logprobs.half(), ids.to(torch.int32)
    want = run(eager_topk, *(t.double() for t in (hidden, weight)), labels,
               stored[0].double(), ids, 0.5, 1.0)
    got = run(topk_distill_loss, hidden, weight, labels, *stored, alpha=0.5, chunk_size=32)
    for actual, expected in zip(got, want):
        assert_close(actual.double(), expected, 1e-5)


def test_ce_and_kl_are_detached_and_the_teacher_gets_no_gradient():
    hidden, weight, labels, teacher_hidden, teacher_weight = make_inputs()
    teacher_weight.requires_grad_()
    loss, ce, kl = linear_distill_loss(hidden, weight, labels, teacher_hidden, teacher_weight,
                                       alpha=0.5)
    loss.backward()
    assert loss.requires_grad and not ce.requires_grad and not kl.requires_grad
    assert teacher_weight.grad is None and weight.grad is not None


def test_a_second_backward_is_refused_not_silently_wrong():
    hidden, weight, labels, teacher_hidden, teacher_weight = make_inputs()
    logprobs, ids = teacher_topk(teacher_hidden, teacher_weight, K)
    loss, _, _ = topk_distill_loss(hidden, weight, labels, logprobs, ids, alpha=0.5)
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="one backward per forward"):
        loss.backward()


def test_every_label_ignored_gives_nan_like_f_cross_entropy():
    hidden, weight, labels, teacher_hidden, teacher_weight = make_inputs()
    labels[:] = -100
    loss, ce, kl = linear_distill_loss(hidden, weight, labels, teacher_hidden, teacher_weight,
                                       alpha=0.5)
    assert math.isnan(loss.item()) and math.isnan(ce.item()) and math.isnan(kl.item())


@pytest.mark.parametrize("alpha, temperature", [(-0.1, 1.0), (1.5, 1.0), (0.5, 0.0)])
def test_alpha_outside_0_1_or_temperature_not_positive_is_refused(alpha, temperature):
    hidden, weight, labels, teacher_hidden, teacher_weight = make_inputs()
    with pytest.raises(ModelError, match="alpha|temperature"):
        linear_distill_loss(hidden, weight, labels, teacher_hidden, teacher_weight,
                            alpha=alpha, temperature=temperature)


def test_under_no_grad_only_the_losses_are_computed():
    inputs = make_inputs(torch.float32)
    want = eager_online(*(t.detach() for t in inputs), 0.5, 1.0)
    with torch.no_grad(), AllocationTracker() as tracker:
        got = linear_distill_loss(*inputs, alpha=0.5, chunk_size=40)
    for actual, expected in zip(got, want):
        assert_close(actual, expected, 1e-5)
    assert tracker.live_bytes < VOCAB * DIM * 4  # no gradient buffer kept


@pytest.mark.parametrize("kind", ["online", "topk"])
def test_chunked_distillation_never_allocates_full_logits_and_peaks_far_below_eager(kind):
    tokens, dim, vocab, chunk = 1024, 32, 4096, 128
    g = torch.Generator().manual_seed(1)
    hidden = torch.randn(tokens, dim, generator=g, requires_grad=True)
    weight = (torch.randn(vocab, dim, generator=g) * 0.05).requires_grad_()
    labels = torch.randint(0, vocab, (tokens,), generator=g)
    teacher_hidden = torch.randn(tokens, dim, generator=g)
    teacher_weight = torch.randn(vocab, dim, generator=g) * 0.05
    if kind == "online":
        teacher = (teacher_hidden, teacher_weight)
        chunked, eager = linear_distill_loss, eager_online
    else:
        teacher = teacher_topk(teacher_hidden, teacher_weight, 32)
        chunked, eager = topk_distill_loss, eager_topk
    with AllocationTracker() as tracker:
        eager(hidden, weight, labels, *teacher, 0.5, 2.0)[0].backward()
    eager_peak = tracker.peak_bytes
    with AllocationTracker() as tracker:
        chunked(hidden, weight, labels, *teacher, alpha=0.5, temperature=2.0,
                chunk_size=chunk)[0].backward()
    assert tracker.largest_numel <= chunk * vocab
    # a few chunks of logits plus the gradient buffers [tokens, dim] and [vocab, dim]
    assert tracker.peak_bytes <= 5 * chunk * vocab * 4 + (tokens + vocab) * dim * 4 * 2
    assert tracker.peak_bytes * 8 < eager_peak


def test_autocast_runs_both_heads_in_bfloat16_within_2e_2_of_float32():
    inputs = make_inputs(torch.float32)
    want = run(eager_online, *inputs, 0.5, 2.0)
    hidden, weight = fresh(inputs[0]), fresh(inputs[1])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, ce, kl = linear_distill_loss(hidden, weight, *inputs[2:], alpha=0.5,
                                           temperature=2.0, chunk_size=32)
    loss.backward()
    assert loss.dtype == torch.float32 and weight.grad.dtype == torch.float32
    for actual, expected in zip((loss, ce, kl, hidden.grad, weight.grad), want):
        assert_close(actual.detach(), expected, 2e-2)
