"""`LlamaConfig`: the architecture of one decoder, its validation, and the named presets.

Presets
-------
- `tinyllama-1.1b`: TinyLlama (Zhang et al., 2024), 1,100,048,384 parameters.
- `litellama-460m`: 461,685,760 parameters.
- The ladder `llama-1m` ... `llama-300m`, for scaling-law sweeps, all made by `ladder_config`
  from one shape rule (below) and named by their approximate NON-embedding parameter count
  (Kaplan et al.'s N; see `model.flops.non_embedding_param_count`).
- `debug-100k`, `debug-1m`: tiny shapes (vocab 512 / 4096) that train on a CPU in seconds;
  they are off the ladder on purpose (GQA, tied head) so tests exercise those paths.

The ladder's shape rule (one free integer, the depth L):
    dim = 64·L  (aspect ratio dim/L = 64),  head_dim = 64  (n_heads = L),  n_kv_heads = n_heads,
    ffn_dim = 8/3·dim rounded up to a multiple of 256 (Llama's SwiGLU width),
so the non-embedding parameter count is ≈ 12·L·dim² = 49,152·L³. Multi-head (not grouped)
attention keeps the count in Kaplan's 12·L·dim² form; GQA saves KV-cache memory at inference,
which a scaling sweep does not measure.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass


class ModelError(ValueError):
    """A user mistake about a model: bad config value, unknown preset, bad checkpoint dir."""


@dataclass(frozen=True)
class LlamaConfig:
    """Shape of a Llama-style decoder. Sizes are counts (not bytes); `max_seq_len` in tokens.

    `attention_backend` picks the attention kernel by name (see `model.attention`); it is not
    part of the architecture and does not change the weights.
    Raises `ModelError` on construction if the values do not describe a valid model.
    """

    vocab_size: int = 32000
    dim: int = 2048
    n_layers: int = 22
    n_heads: int = 32
    n_kv_heads: int = 4
    ffn_dim: int = 5632
    max_seq_len: int = 2048
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    tie_embeddings: bool = False
    attention_backend: str = "auto"

    def __post_init__(self):
        for name in ("vocab_size", "dim", "n_layers", "n_heads", "n_kv_heads", "ffn_dim",
                     "max_seq_len"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ModelError(f"{name} must be a positive integer, got {value!r} (LlamaConfig)")
        for name in ("rope_theta", "norm_eps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ModelError(f"{name} must be a positive number, got {value!r} (LlamaConfig)")
        if not isinstance(self.tie_embeddings, bool):
            raise ModelError(f"tie_embeddings must be true or false, got {self.tie_embeddings!r} "
                             "(LlamaConfig)")
        if not isinstance(self.attention_backend, str) or not self.attention_backend:
            raise ModelError(f"attention_backend must be a backend name, got "
                             f"{self.attention_backend!r} (LlamaConfig)")
        if self.dim % self.n_heads:
            raise ModelError(f"n_heads={self.n_heads} must divide dim={self.dim} (LlamaConfig)")
        if self.n_heads % self.n_kv_heads:
            raise ModelError(f"n_kv_heads={self.n_kv_heads} must divide n_heads={self.n_heads} "
                             "(LlamaConfig)")
        if self.head_dim % 2:
            raise ModelError(f"head_dim = dim/n_heads = {self.head_dim} must be even for rotary "
                             "embeddings (LlamaConfig)")

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    @classmethod
    def from_name(cls, name: str, **overrides) -> "LlamaConfig":
        """The preset `name`, with fields replaced by `overrides` (e.g. `vocab_size=4096`)."""
        if name not in PRESETS:
            raise ModelError(f"unknown model preset {name!r} (known: {', '.join(PRESETS)})")
        return PRESETS[name].replace(**overrides)

    def replace(self, **overrides) -> "LlamaConfig":
        """A copy with some fields changed; unknown field names raise `ModelError`."""
        _check_field_names(overrides)
        return dataclasses.replace(self, **overrides)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "LlamaConfig":
        """Inverse of `to_dict`; unknown keys raise `ModelError` (a config from a newer version)."""
        _check_field_names(values)
        return cls(**values)


def _check_field_names(values: dict) -> None:
    known = [f.name for f in dataclasses.fields(LlamaConfig)]
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ModelError(f"unknown LlamaConfig field {unknown[0]!r} (known: {', '.join(known)})")


def ladder_config(n_layers: int, **overrides) -> LlamaConfig:
    """The ladder shape of depth `n_layers` (rule in the module docstring), vocab 32000."""
    if isinstance(n_layers, bool) or not isinstance(n_layers, int) or n_layers <= 0:
        raise ModelError(f"ladder depth must be a positive integer, got {n_layers!r}")
    dim = 64 * n_layers
    shape = dict(vocab_size=32000, dim=dim, n_layers=n_layers, n_heads=n_layers,
                 n_kv_heads=n_layers, ffn_dim=256 * math.ceil(8 * dim / 3 / 256),
                 max_seq_len=2048, rope_theta=10000.0, norm_eps=1e-5, tie_embeddings=False)
    _check_field_names(overrides)
    return LlamaConfig(**{**shape, **overrides})


# Ladder depths chosen so that the non-embedding count lands near each half-decade name.
LADDER_DEPTHS = {"llama-1m": 3, "llama-3m": 4, "llama-10m": 6, "llama-30m": 8,
                 "llama-100m": 13, "llama-300m": 18}

PRESETS: dict[str, LlamaConfig] = {
    "tinyllama-1.1b": LlamaConfig(
        vocab_size=32000, dim=2048, n_layers=22, n_heads=32, n_kv_heads=4, ffn_dim=5632,
        max_seq_len=2048, rope_theta=10000.0, norm_eps=1e-5, tie_embeddings=False),
    "litellama-460m": LlamaConfig(
        vocab_size=50304, dim=1024, n_layers=24, n_heads=16, n_kv_heads=2, ffn_dim=4096,
        max_seq_len=2048, rope_theta=10000.0, norm_eps=1e-6, tie_embeddings=False),
    **{name: ladder_config(depth) for name, depth in LADDER_DEPTHS.items()},
    "debug-100k": LlamaConfig(
        vocab_size=512, dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=192,
        max_seq_len=256, rope_theta=10000.0, norm_eps=1e-5, tie_embeddings=True),
    "debug-1m": LlamaConfig(
        vocab_size=4096, dim=128, n_layers=4, n_heads=4, n_kv_heads=1, ffn_dim=512,
        max_seq_len=512, rope_theta=10000.0, norm_eps=1e-5, tie_embeddings=False),
}
