"""Parameter counts, training FLOPs per token and weight memory of a `LlamaConfig`, by formula.

The one place these numbers are defined (MFU, scaling-law fits and `slm model info` import
them). Tests check the counts against `sum(p.numel())` of the real module.
"""

from __future__ import annotations

from model.config import LlamaConfig


def embedding_param_count(config: LlamaConfig) -> int:
    """Token embedding table, plus the LM head when it is not tied to it."""
    table = config.vocab_size * config.dim
    return table if config.tie_embeddings else 2 * table


def non_embedding_param_count(config: LlamaConfig) -> int:
    """Parameters of the blocks and the final norm: everything except the token embedding and
    the LM head (Kaplan et al. 2020's N; the `params` column of scaling sweeps). Tied and
    untied models of the same shape have the same count."""
    d, hd = config.dim, config.head_dim
    attention = d * config.n_heads * hd + 2 * d * config.n_kv_heads * hd + config.n_heads * hd * d
    mlp = 3 * d * config.ffn_dim
    norms = 2 * d
    return config.n_layers * (attention + mlp + norms) + d


def param_count(config: LlamaConfig) -> int:
    """All parameters, counting a tied embedding/head matrix once."""
    return non_embedding_param_count(config) + embedding_param_count(config)


def flops_per_token(config: LlamaConfig, seq_len: int) -> float:
    """Training (forward + backward) FLOPs per token at sequence length `seq_len`.

    PaLM (Chowdhery et al. 2022, app. B): 6·N + 12·L·H·Q·T, with H·Q = n_heads·head_dim = dim.
    Our N = non-embedding parameters + vocab_size·dim: every weight that does a matmul per token.
    So the LM head is counted (as nanoGPT and PaLM do) and the embedding lookup, a gather, is
    not; tied or untied makes no difference. The attention term counts the full T×T score
    matrix (no causal halving), as PaLM does.
    """
    matmul_params = non_embedding_param_count(config) + config.vocab_size * config.dim
    return 6.0 * matmul_params + 12.0 * config.n_layers * config.dim * seq_len


def weight_memory_bytes(config: LlamaConfig, bytes_per_param: int = 2) -> int:
    """Bytes of the weights alone (default bf16: 2 bytes each): no optimizer state, activations."""
    return param_count(config) * bytes_per_param
