"""Over-training law (Gadre et al. 2024) and the inference-aware optimum (Sardana et al. 2024)."""

import numpy as np
import pytest

from pretrain.errors import PretrainError
from pretrain.scaling.fit_overtrain import OvertrainLaw, fit_overtrain, inference_optimal
from tests.scaling.synthetic import CHINCHILLA

TRUE = OvertrainLaw(E=1.9, a=30.0, b=90.0, eta=0.12)


def overtrain_points(noise=0.002, seed=0):
    """Fixed multipliers M (Gadre et al.'s 5..320 plus 2,700) at several model sizes."""
    rng = np.random.default_rng(seed)
    rows = []
    for multiplier in (5, 10, 20, 40, 80, 160, 320, 2700):
        for params in (1e7, 3e7, 1e8, 3e8, 1e9):
            tokens = multiplier * params
            flops = 6 * params * tokens
            loss = float(TRUE.loss(flops, multiplier)) * float(np.exp(rng.normal(0, noise)))
            rows.append((params, tokens, loss, flops))
    return tuple(np.array(c) for c in zip(*rows))


def test_fit_recovers_the_overtraining_law_and_predicts_the_largest_models():
    params, tokens, loss, flops = overtrain_points()
    fit = fit_overtrain(params, tokens, loss, flops)
    assert fit.law.eta == pytest.approx(TRUE.eta, abs=0.01)
    assert fit.law.E == pytest.approx(TRUE.E, rel=0.05)
    # Held out: every run of the largest size (1e9), predicted from the smaller ones.
    assert len(fit.heldout_runs) == 8 and np.all(params[fit.heldout_runs] == 1e9)
    assert np.max(np.abs(fit.heldout_relative_error)) < 0.01


def test_lines_of_fixed_multiplier_are_parallel_in_log_log_space():
    flops = np.array([1e18, 1e20])
    slopes = [np.diff(np.log(TRUE.loss(flops, m) - TRUE.E)) / np.diff(np.log(flops))
              for m in (5, 20, 2700)]
    assert np.allclose(slopes, -TRUE.eta)


def test_without_inference_the_optimum_is_the_compute_optimal_frontier():
    flops = 1e21
    target = float(CHINCHILLA.optimal_loss(flops))
    optimum = inference_optimal(CHINCHILLA, target, inference_tokens=0.0)
    assert optimum.params == pytest.approx(CHINCHILLA.optimal_params(flops), rel=1e-3)
    assert optimum.training_flops == pytest.approx(flops, rel=1e-4)


def test_more_inference_favours_smaller_models_trained_longer():
    target = float(CHINCHILLA.optimal_loss(1e22))
    optima = [inference_optimal(CHINCHILLA, target, d) for d in (0.0, 1e11, 1e12, 1e13)]
    params = [o.params for o in optima]
    tokens_per_param = [o.tokens / o.params for o in optima]
    assert params == sorted(params, reverse=True)
    assert tokens_per_param == sorted(tokens_per_param)
    for optimum in optima:  # every optimum reaches the target loss exactly
        assert CHINCHILLA.loss(optimum.params, optimum.tokens) == pytest.approx(target, rel=1e-9)
    # and beats the compute-optimal model once inference is counted
    chinchilla = optima[0]
    for optimum in optima[1:]:
        cost_of_chinchilla = chinchilla.training_flops + 2 * chinchilla.params * optimum.inference_tokens
        assert optimum.total_flops < cost_of_chinchilla


def test_a_target_below_the_irreducible_loss_is_an_error():
    with pytest.raises(PretrainError, match="irreducible"):
        inference_optimal(CHINCHILLA, 1.5, 0.0)
