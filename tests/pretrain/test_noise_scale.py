"""The gradient noise scale: the in-loop estimate (first micro-batch vs whole step, McCandlish
et al. Appendix A.1) agrees with a brute-force one from per-sequence gradients, and logging it
leaves training unchanged."""

import math
import statistics

import torch

from pretrain.training.noise_scale import NoiseScale, unbiased_estimates
from tests.fixtures.pretrain import TINY_VOCAB, assert_same_losses, metrics_losses, tiny_config

POOL, SEQ_LEN, MICRO, ACCUMULATION, STEPS = 32, 32, 2, 4, 80


def _flat_grad(model) -> torch.Tensor:
    return torch.cat([p.grad.flatten() for p in model.parameters()])


def test_the_in_loop_estimate_matches_brute_force_within_its_standard_error(pretrain_data):
    from data import StreamingTokenDataset
    from model import Llama, LlamaConfig
    from pretrain.training.step import causal_lm_loss, training_step

    torch.manual_seed(0)
    model = Llama(LlamaConfig.from_name("debug-100k", vocab_size=TINY_VOCAB))
    stream = iter(StreamingTokenDataset(pretrain_data, "train", seq_len=SEQ_LEN, seed=3))
    pool = [next(stream) for _ in range(POOL)]
    # Brute force: every sequence's own gradient at these fixed weights.
    grads = []
    for sample in pool:
        model.zero_grad()
        causal_lm_loss(model, {k: v[None] for k, v in sample.items()}, "eager").backward()
        grads.append(_flat_grad(model).double())
    grads = torch.stack(grads)
    mean = grads.mean(0)
    true_grad_sq = mean.square().sum().item()
    true_trace = (grads - mean).square().sum(1).mean().item()  # population covariance trace
    # In the loop: steps of ACCUMULATION micro-batches drawn with replacement, weights frozen (lr 0).
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    draw = torch.Generator().manual_seed(1)
    estimates = []
    for _ in range(STEPS):
        picks = torch.randint(0, POOL, (ACCUMULATION, MICRO), generator=draw)
        batches = [{k: torch.stack([pool[i][k] for i in row]) for k in pool[0]} for row in picks.tolist()]
        result = training_step(model, optimizer, batches, lambda b: causal_lm_loss(model, b, "eager"),
                               grad_clip=0.0, measure_first_micro_batch=True)
        estimates.append(unbiased_estimates(result.first_micro_grad_sq.item(), result.grad_norm.item() ** 2,
                                            MICRO, MICRO * ACCUMULATION))
    for index, truth in ((0, true_grad_sq), (1, true_trace)):
        values = [e[index] for e in estimates]
        standard_error = statistics.stdev(values) / math.sqrt(len(values))
        assert abs(statistics.fmean(values) - truth) <= 3 * standard_error, (index, truth, statistics.fmean(values), standard_error)
    assert true_trace / true_grad_sq > 1  # a noise scale worth measuring: more than one sequence


def test_the_averaged_noise_scale_is_the_ratio_of_the_averaged_parts():
    noise = NoiseScale(decay=0.5)
    assert noise.metrics(seq_len=100) == {}
    noise.update(small_sq=5.0, big_sq=2.0, b_small=1, b_big=4)  # |G|² = 1, tr Σ = 4
    noise.update(small_sq=9.0, big_sq=3.0, b_small=1, b_big=4)  # |G|² = 1, tr Σ = 8
    metrics = noise.metrics(seq_len=100)
    assert math.isclose(metrics["noise_grad_sq"], 1.0) and math.isclose(metrics["noise_trace"], 20 / 3)
    assert math.isclose(metrics["noise_scale_tokens"], 100 * metrics["noise_scale_sequences"])


def test_a_run_logging_the_noise_scale_trains_exactly_like_one_without(pretrain_data, tmp_path,
                                                                      run_pretrain, trained_run):
    from pretrain.training.run_logs import read_metrics

    run_dir = tmp_path / "noise"
    run_pretrain("--config", tiny_config(run_dir, pretrain_data, model={"noise_scale": True}))
    assert_same_losses(metrics_losses(run_dir), metrics_losses(trained_run), [1, 2, 3, 4], 1e-7)
    rows = [r for r in read_metrics(run_dir / "metrics.csv") if r["loss"]]
    logged = [r for r in rows if r["noise_scale_tokens"]]
    assert logged, "no row carries the noise scale"
    for row in logged:
        assert math.isclose(float(row["noise_scale_tokens"]), 32 * float(row["noise_scale_sequences"]),
                            rel_tol=1e-6)
