"""Approach 3: the Huber/LSE fit recovers a known law; frontier algebra; the gradient."""

import numpy as np
import pytest
from scipy.optimize import minimize_scalar

from pretrain.scaling.fit_approach3 import GRID_A, GRID_ALPHA, GRID_B, GRID_BETA, GRID_E, \
    ChinchillaLaw, _terms, fit_approach3, frontier_table, initial_grid, parameter_summary
from pretrain.scaling.huber_lse import grid, objective_and_gradient
from tests.scaling.synthetic import CHINCHILLA, grid_points


# A corner of Besiroglu et al.'s grid (32 of its 4,500 starts), for the fast default suite;
# the full grid runs in the slow tests (it takes ~20 s of one idle CPU core).
GRID_CORNER = grid(GRID_A[1:3], GRID_B[1:3], GRID_E[2:4], GRID_ALPHA[:2], GRID_BETA[:2])


@pytest.fixture(scope="module")
def chinchilla_fit():
    """One full-grid fit (4,500 starts) of 100 noisy points from Chinchilla's published law."""
    params, tokens, loss = grid_points(count=100, noise=0.003, seed=0)
    return fit_approach3(params, tokens, loss, bootstrap=20, seed=0)


def test_fit_from_a_corner_of_the_grid_recovers_all_five_parameters():
    params, tokens, loss = grid_points(count=100, noise=0.003, seed=0)
    law = fit_approach3(params, tokens, loss, starts=GRID_CORNER).law
    assert law.E == pytest.approx(CHINCHILLA.E, rel=0.02)
    assert law.A == pytest.approx(CHINCHILLA.A, rel=0.25)
    assert law.B == pytest.approx(CHINCHILLA.B, rel=0.25)
    assert law.alpha == pytest.approx(CHINCHILLA.alpha, abs=0.015)
    assert law.beta == pytest.approx(CHINCHILLA.beta, abs=0.015)


def test_the_initialisation_grid_is_besiroglu_et_al_s_4500_points():
    starts = initial_grid()
    assert starts.shape == (4500, 5)
    a, b, e, alpha, beta = starts.T
    assert sorted(set(alpha)) == sorted(set(beta)) == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert sorted(set(e)) == [-1.0, -0.5, 0.0, 0.5, 1.0]
    assert sorted(set(a)) == sorted(set(b)) == [0.0, 5.0, 10.0, 15.0, 20.0, 25.0]


@pytest.mark.slow
def test_full_grid_fit_recovers_all_five_parameters_of_chinchillas_law(chinchilla_fit):
    law = chinchilla_fit.law
    assert law.E == pytest.approx(CHINCHILLA.E, rel=0.02)
    assert law.A == pytest.approx(CHINCHILLA.A, rel=0.25)
    assert law.B == pytest.approx(CHINCHILLA.B, rel=0.25)
    assert law.alpha == pytest.approx(CHINCHILLA.alpha, abs=0.015)
    assert law.beta == pytest.approx(CHINCHILLA.beta, abs=0.015)
    assert law.params_exponent == pytest.approx(CHINCHILLA.params_exponent, abs=0.02)


@pytest.mark.slow
def test_bootstrap_intervals_contain_the_true_parameters(chinchilla_fit):
    summary = parameter_summary(chinchilla_fit)
    assert len(chinchilla_fit.bootstrap) == 20
    for name in ("E", "A", "B", "alpha", "beta"):
        low, high = summary[name]["ci95"]
        assert summary[name]["se"] > 0
        truth = getattr(CHINCHILLA, name)
        # 20 resamples give a rough interval: allow one standard error of slack on each side.
        slack = summary[name]["se"]
        assert low - slack <= truth <= high + slack, (name, low, high, truth)


def test_bootstrap_is_reproducible_with_the_same_seed_and_varies_with_another():
    params, tokens, loss = grid_points(count=30, noise=0.01, seed=3)
    near_truth = np.array([[6.0, 6.0, 0.5, 0.3, 0.3], [5.0, 7.0, 0.0, 0.5, 0.5]])

    def alphas(seed):
        fit = fit_approach3(params, tokens, loss, bootstrap=3, seed=seed, starts=near_truth)
        return [law.alpha for law in fit.bootstrap]

    assert alphas(5) == alphas(5)
    assert alphas(5) != alphas(6)


def test_frontier_spends_exactly_the_budget_and_minimises_loss_along_it():
    law = CHINCHILLA
    for flops in (1e19, 5.76e23):
        n_opt, d_opt = law.optimal_params(flops), law.optimal_tokens(flops)
        assert 6 * n_opt * d_opt == pytest.approx(flops, rel=1e-9)
        # Brute force: the loss along C = 6ND is smallest at N_opt.
        best = minimize_scalar(lambda u: law.loss(np.exp(u), flops / (6 * np.exp(u))),
                               bounds=(np.log(n_opt) - 5, np.log(n_opt) + 5), method="bounded",
                               options={"xatol": 1e-9})
        assert np.exp(best.x) == pytest.approx(n_opt, rel=1e-4)


def test_frontier_exponents_follow_alpha_and_beta():
    law = ChinchillaLaw(E=1.8, A=482.0, B=2085.4, alpha=0.3478, beta=0.3658)
    assert law.params_exponent == pytest.approx(0.3658 / (0.3478 + 0.3658))
    assert law.tokens_exponent == pytest.approx(0.3478 / (0.3478 + 0.3658))
    ratio = law.optimal_params(1e24) / law.optimal_params(1e22)
    assert ratio == pytest.approx(100 ** law.params_exponent)


def test_optimal_flops_for_loss_inverts_optimal_loss():
    for flops in (1e18, 1e21, 1e24):
        assert CHINCHILLA.optimal_flops_for_loss(CHINCHILLA.optimal_loss(flops)) == \
            pytest.approx(flops, rel=1e-8)


def test_frontier_table_reports_tokens_per_param_with_intervals():
    params, tokens, loss = grid_points(count=40, noise=0.01, seed=4)
    fit = fit_approach3(params, tokens, loss, bootstrap=5, starts=GRID_CORNER)
    rows = frontier_table(fit, [1e20, 1e22])
    for row in rows:
        assert row["tokens_per_param"] == pytest.approx(row["tokens"] / row["params"])
        low, high = row["params_ci95"]
        assert low <= row["params"] <= high


def test_analytic_gradient_matches_finite_differences():
    params, tokens, loss = grid_points(count=25, noise=0.05, seed=2)
    terms, log_loss = _terms(params, tokens), np.log(loss)
    theta = np.array([6.0, 6.5, 0.4, 0.3, 0.3])
    _, gradient = objective_and_gradient(theta, terms, log_loss)
    step = 1e-7
    for i in range(5):
        shift = np.zeros(5)
        shift[i] = step
        numeric = (objective_and_gradient(theta + shift, terms, log_loss)[0]
                   - objective_and_gradient(theta - shift, terms, log_loss)[0]) / (2 * step)
        assert gradient[i] == pytest.approx(numeric, rel=1e-4, abs=1e-9)
