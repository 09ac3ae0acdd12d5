"""Approach 2: parabola minima per isoFLOP budget and the power laws through them."""

import numpy as np
import pytest

from pretrain.scaling.fit_approach2 import fit_approach2, fit_profile, group_budgets
from tests.scaling.synthetic import CHINCHILLA, isoflop_points


def test_parabola_vertex_is_the_minimum_of_an_exact_parabola():
    params = np.geomspace(1e6, 1e8, 7)
    x = np.log10(params)
    loss = 0.3 * (x - 7.2) ** 2 + 2.5  # minimum at N = 10^7.2, loss 2.5
    profile = fit_profile(1e18, params, loss)
    assert profile.optimal_params == pytest.approx(10 ** 7.2, rel=1e-9)
    assert profile.optimal_loss == pytest.approx(2.5, abs=1e-9)
    assert profile.optimal_tokens == pytest.approx(1e18 / (6 * 10 ** 7.2), rel=1e-9)
    assert profile.interior


def test_a_profile_without_a_minimum_is_marked_so():
    params = np.geomspace(1e6, 1e8, 5)
    profile = fit_profile(1e18, params, -(np.log10(params) - 7) ** 2 + 3)
    assert profile.optimal_params is None


def test_isoflop_minima_follow_the_law_they_were_drawn_from():
    params, tokens, loss, flops = isoflop_points(budgets=(1e18, 1e19, 1e20, 1e21))
    fit = fit_approach2(params, loss, flops)
    assert len(fit.profiles) == 4
    for profile in fit.profiles:
        # A parabola in log N approximates the true profile: within 10% of the true optimum.
        assert profile.optimal_params == pytest.approx(CHINCHILLA.optimal_params(profile.flops),
                                                       rel=0.10)
    assert fit.params_law.exponent == pytest.approx(CHINCHILLA.params_exponent, abs=0.01)
    assert fit.tokens_law.exponent == pytest.approx(CHINCHILLA.tokens_exponent, abs=0.01)
    assert fit.params_law.exponent + fit.tokens_law.exponent == pytest.approx(1.0, abs=1e-9)


def test_runs_group_by_budget_column_or_by_nearby_flops():
    flops = np.array([1.00e18, 1.03e18, 0.98e18, 1e19, 1.01e19])
    assert [sorted(g.tolist()) for g in group_budgets(flops)] == [[0, 1, 2], [3, 4]]
    budget = np.array([1e18, 2e18, 1e18, 2e18, 2e18])
    assert [sorted(g.tolist()) for g in group_budgets(flops, budget)] == [[0, 2], [1, 3, 4]]


def test_too_few_budgets_give_no_fit():
    params, tokens, loss, flops = isoflop_points(budgets=(1e18,))
    assert fit_approach2(params, loss, flops) is None
