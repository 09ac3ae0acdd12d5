"""Published reference points drawn next to our fits (not fitted, not used by any fit)."""

from __future__ import annotations

import numpy as np

# Hoffmann et al. (2022): N_opt ∝ C^0.5 with ~20 training tokens per parameter, so with
# C = 6·N·D = 6·20·N², N_opt = sqrt(C / 120).
CHINCHILLA_TOKENS_PER_PARAM = 20.0
# Kaplan et al. (2020), figure 14 / eq. (6.1): N_opt = 1.3e9 · C_min^0.73, C_min in PF-days.
KAPLAN_COEFFICIENT = 1.3e9
KAPLAN_EXPONENT = 0.73
PETAFLOP_DAY = 1e15 * 86400.0
# TinyLlama (Zhang et al. 2024): the 1.1B model trained on 3T tokens.
TINYLLAMA_PRESET = "tinyllama-1.1b"
TINYLLAMA_TOKENS = 3e12


def chinchilla_params(flops):
    return np.sqrt(np.asarray(flops, float) / (6.0 * CHINCHILLA_TOKENS_PER_PARAM))


def kaplan_params(flops):
    return KAPLAN_COEFFICIENT * (np.asarray(flops, float) / PETAFLOP_DAY) ** KAPLAN_EXPONENT


def tinyllama_point(count: str = "total") -> dict:
    """TinyLlama's (params, tokens, 6·N·D FLOPs), from the model preset; N counts all
    parameters (``total``) or the non-embedding ones."""
    from model import LlamaConfig
    from model.flops import non_embedding_param_count, param_count

    config = LlamaConfig.from_name(TINYLLAMA_PRESET)
    params = float(param_count(config) if count == "total" else
                   non_embedding_param_count(config))
    return {"params": params, "tokens": TINYLLAMA_TOKENS,
            "flops": 6.0 * params * TINYLLAMA_TOKENS,
            "tokens_per_param": TINYLLAMA_TOKENS / params}
