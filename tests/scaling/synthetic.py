"""Synthetic scaling data from known laws, for tests that check a fit recovers its law."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from pretrain.scaling.fit_approach3 import ChinchillaLaw

# Hoffmann et al. (2022)'s published approach-3 law.
CHINCHILLA = ChinchillaLaw(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)


def grid_points(law: ChinchillaLaw = CHINCHILLA, count: int = 100, noise: float = 0.003,
                seed: int = 0):
    """(N, D, L): N and D log-uniform over Chinchilla's ranges, L with log-normal noise."""
    rng = np.random.default_rng(seed)
    params = np.exp(rng.uniform(np.log(5e7), np.log(2e10), count))
    tokens = np.exp(rng.uniform(np.log(1e9), np.log(5e11), count))
    loss = law.loss(params, tokens) * np.exp(rng.normal(0.0, noise, count))
    return params, tokens, loss


def isoflop_points(law: ChinchillaLaw = CHINCHILLA, budgets=(1e18, 1e19, 1e20, 1e21),
                   sizes_per_budget: int = 9, noise: float = 0.0, seed: int = 0):
    """(N, D, L, C): for each budget, sizes spread ×1/8..×8 around the law's optimum."""
    rng = np.random.default_rng(seed)
    rows = []
    for flops in budgets:
        for factor in np.geomspace(1 / 8, 8, sizes_per_budget):
            params = float(law.optimal_params(flops)) * factor
            tokens = flops / (6 * params)
            loss = float(law.loss(params, tokens)) * float(np.exp(rng.normal(0.0, noise)))
            rows.append((params, tokens, loss, flops))
    return tuple(np.array(column) for column in zip(*rows))


def write_results(path: Path, columns: dict) -> Path:
    """A results CSV from equal-length columns {name: values}."""
    names = list(columns)
    with Path(path).open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(names)
        for row in zip(*(columns[n] for n in names)):
            writer.writerow(row)
    return Path(path)
