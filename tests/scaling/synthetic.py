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


def synthetic_sweep(noise: float = 0.003, seed: int = 3) -> dict:
    """Results columns: isoFLOP runs at 1e18–1e20 (fitted) with noise, plus two exact held-out
    runs at 10× the largest budget: ``held0`` near compute-optimal, ``held1`` over-trained
    (M = 10× the optimal tokens per parameter)."""
    params, tokens, loss, flops = isoflop_points(budgets=(1e18, 1e19, 1e20),
                                                 sizes_per_budget=5, noise=noise, seed=seed)
    big = 1e21
    n_opt = float(CHINCHILLA.optimal_params(big))
    m_opt = float(CHINCHILLA.optimal_tokens(big)) / n_opt
    n_over = float(np.sqrt(big / (6 * 10 * m_opt)))
    held = [(n_opt, big / (6 * n_opt)), (n_over, 10 * m_opt * n_over)]
    return {"run": [f"fit{i}" for i in range(len(params))] + ["held0", "held1"],
            "params": list(params) + [n for n, _ in held],
            "tokens": list(tokens) + [d for _, d in held],
            "loss": list(loss) + [float(CHINCHILLA.loss(n, d)) for n, d in held],
            "budget": list(flops) + [big, big],
            "holdout": [0] * len(params) + [1, 1]}


def write_results(path: Path, columns: dict) -> Path:
    """A results CSV from equal-length columns {name: values}."""
    names = list(columns)
    with Path(path).open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(names)
        for row in zip(*(columns[n] for n in names)):
            writer.writerow(row)
    return Path(path)


def tradeoff_steps(loss, batch):
    """Steps to reach ``loss`` at global batch ``batch`` (tokens) under a known trade-off:
    S = S_min(L)·(1 + B_crit(L)/B) with S_min = 50/(L − 2)², B_crit = 4000/(L − 2) tokens."""
    loss = np.asarray(loss, float)
    return 50.0 / (loss - 2.0) ** 2 * (1.0 + tradeoff_critical_batch(loss) / batch)


def tradeoff_critical_batch(loss):
    return 4000.0 / (np.asarray(loss, float) - 2.0)


def write_batch_sweep(directory: Path, batches=(500, 1000, 2000, 4000, 8000, 16000, 32000),
                      tokens: float = 2.56e7, validations: int = 64, seq_len: int = 100,
                      noise: bool = True) -> Path:
    """curves.csv (and noise.csv with B_simple = the true B_crit at the run's loss) of a batch
    sweep whose runs follow ``tradeoff_steps`` exactly; returns the curves path."""
    directory = Path(directory)
    grid = np.linspace(2.05, 6.0, 20000)  # losses; steps fall as the loss rises
    curves, noise_rows = [], []
    for batch in batches:
        steps_total = int(tokens // batch)
        steps = np.unique(np.linspace(steps_total / validations, steps_total,
                                      validations).round().astype(int))
        needed = tradeoff_steps(grid, batch)  # decreasing in grid
        loss = np.interp(steps, needed[::-1], grid[::-1])
        for s, value in zip(steps, loss):
            curves.append((f"B{batch}", batch, seq_len, int(s), float(value)))
            noise_rows.append((f"B{batch}", int(s), float(tradeoff_critical_batch(value))))
    write_results(directory / "curves.csv",
                  dict(zip(("run", "batch", "seq_len", "step", "val_loss"), zip(*curves))))
    if noise:
        write_results(directory / "noise.csv",
                      dict(zip(("run", "step", "noise_scale_tokens"), zip(*noise_rows))))
    return directory / "curves.csv"
