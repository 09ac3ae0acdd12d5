"""The Llama decoder: pre-norm blocks of grouped-query attention and a SwiGLU MLP.

Pure PyTorch; parallelism (FSDP2, compile, activation checkpointing) is applied from outside.
Parameter names follow torchtitan; `model.hf` maps them to Hugging Face's.

Rotary embeddings use HF's "rotate_half" layout (each head's first and second halves form the
rotated pairs), so HF Llama weights load without permuting q/k.

Initialisation (GPT-NeoX, Black et al. 2022; what TinyLlama uses, up to the fan-in it plugs in):
  - "small init" std = sqrt(2 / (5·dim)) for tok_embeddings, wq, wk, wv, w1, w3 and an untied
    output (tinyllama-1.1b: 0.01398),
  - "wang init" std = 2 / (n_layers·sqrt(dim)) for the residual projections wo and w2
    (tinyllama-1.1b: 0.002009),
  - RMSNorm weights = 1. No biases anywhere.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from model.attention import bind_backend, select_backend
from model.config import LlamaConfig, ModelError


class RMSNorm(nn.Module):
    """x / rms(x) · weight, computed in float32 and cast back before the weight (as HF does)."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normed = F.rms_norm(x.float(), (x.shape[-1],), eps=self.eps)
        return self.weight * normed.type_as(x)

    def init_weights(self):
        nn.init.ones_(self.weight)


class RotaryEmbedding(nn.Module):
    """Cached cos/sin tables [max_seq_len, head_dim], float32, not saved in state dicts."""

    def __init__(self, head_dim: int, max_seq_len: int, theta: float):
        super().__init__()
        self.head_dim, self.max_seq_len, self.theta = head_dim, max_seq_len, theta
        self.register_buffer("cos", torch.empty(max_seq_len, head_dim), persistent=False)
        self.register_buffer("sin", torch.empty(max_seq_len, head_dim), persistent=False)
        self.init_weights()

    def init_weights(self):
        device = self.cos.device
        exponents = torch.arange(0, self.head_dim, 2, device=device).float() / self.head_dim
        angles = torch.outer(torch.arange(self.max_seq_len, device=device).float(),
                             1.0 / self.theta ** exponents)
        angles = torch.cat([angles, angles], dim=-1)  # rotate_half layout: halves share angles
        self.cos.copy_(angles.cos())
        self.sin.copy_(angles.sin())

    def _apply(self, fn, recurse=True):
        # `model.to(torch.bfloat16)` would round the tables (bf16 cannot tell position 1000 from
        # 1004): keep them float32 and recompute them after any cast.
        super()._apply(fn, recurse)
        if self.cos.dtype != torch.float32:
            self.cos, self.sin = self.cos.float(), self.sin.float()
            self.init_weights()
        return self

    def forward(self, start_pos: int, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(cos, sin), each [seq_len, head_dim] float32, for positions start_pos.. ."""
        if start_pos + seq_len > self.max_seq_len:
            raise ModelError(f"positions up to {start_pos + seq_len} exceed max_seq_len="
                             f"{self.max_seq_len} (LlamaConfig)")
        return self.cos[start_pos:start_pos + seq_len], self.sin[start_pos:start_pos + seq_len]


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x [B, T, heads, head_dim] by position (cos/sin: [T, head_dim]); rotate_half layout."""
    x1, x2 = x.float().chunk(2, dim=-1)
    rotated = torch.cat([-x2, x1], dim=-1)
    cos, sin = cos[None, :, None, :], sin[None, :, None, :]
    return (x.float() * cos + rotated * sin).type_as(x)


class KVCache:
    """Keys and values of every layer for `batch_size` sequences of up to `max_seq_len` tokens."""

    def __init__(self, config: LlamaConfig, batch_size: int, max_seq_len: int,
                 device: torch.device | str, dtype: torch.dtype):
        shape = (config.n_layers, batch_size, max_seq_len, config.n_kv_heads, config.head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)

    def update(self, layer_id: int, start_pos: int, k: torch.Tensor, v: torch.Tensor):
        """Store k/v [B, T, kv_heads, hd] at positions start_pos.. and return keys/values 0..end."""
        end = start_pos + k.shape[1]
        self.k[layer_id, :, start_pos:end] = k
        self.v[layer_id, :, start_pos:end] = v
        return self.k[layer_id, :, :end], self.v[layer_id, :, :end]


class Attention(nn.Module):
    """Grouped-query attention; the kernel is `config.attention_backend` (see `model.attention`),
    chosen for the module's device when it is built and again whenever it moves (`_apply`), so
    a compiled forward never runs the choice itself."""

    def __init__(self, config: LlamaConfig, layer_id: int):
        super().__init__()
        self.layer_id, self.backend = layer_id, config.attention_backend
        self.n_heads, self.n_kv_heads = config.n_heads, config.n_kv_heads
        self.head_dim = config.head_dim
        self.wq = nn.Linear(config.dim, config.n_heads * self.head_dim, bias=False)
        self.wk = nn.Linear(config.dim, config.n_kv_heads * self.head_dim, bias=False)
        self.wv = nn.Linear(config.dim, config.n_kv_heads * self.head_dim, bias=False)
        self.wo = nn.Linear(config.n_heads * self.head_dim, config.dim, bias=False)
        self.bind_backend()

    def bind_backend(self) -> None:
        """Resolve `self.backend` now for every compute dtype on the weights' device."""
        self.kernels = bind_backend(self.backend, self.wq.weight.device, self.n_heads,
                                    self.head_dim)

    def _apply(self, fn, recurse=True):
        # `.to(device)`, `.cuda()` and `to_empty(device=...)` change what "auto" means (sdpa on
        # CPU, flash-attn on a GPU that has it): choose again for the new device.
        super()._apply(fn, recurse)
        self.bind_backend()
        return self

    def rotate(self, q, k, rope):
        """Rotary embedding of q and k (`model.kernels.fused_ops` swaps a fused kernel in here)."""
        return apply_rotary(q, *rope), apply_rotary(k, *rope)

    def forward(self, x, rope, document_ids=None, cache=None, start_pos=0):
        B, T, _ = x.shape
        q = self.wq(x).view(B, T, self.n_heads, self.head_dim)
        k = self.wk(x).view(B, T, self.n_kv_heads, self.head_dim)
        v = self.wv(x).view(B, T, self.n_kv_heads, self.head_dim)
        q, k = self.rotate(q, k, rope)
        if cache is not None:
            k, v = cache.update(self.layer_id, start_pos, k, v)
        attend = self.kernels.get((q.device.type, q.dtype))
        if attend is None:  # a dtype or device not bound ahead: choose now (eager code only)
            attend = select_backend(self.backend, q)
        out = attend(q, k, v, document_ids)
        return self.wo(out.reshape(B, T, -1))


class FeedForward(nn.Module):
    """SwiGLU: w2(silu(w1 x) * w3 x)."""

    def __init__(self, dim: int, ffn_dim: int):
        super().__init__()
        self.w1 = nn.Linear(dim, ffn_dim, bias=False)
        self.w2 = nn.Linear(ffn_dim, dim, bias=False)
        self.w3 = nn.Linear(dim, ffn_dim, bias=False)

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class TransformerBlock(nn.Module):
    def __init__(self, config: LlamaConfig, layer_id: int):
        super().__init__()
        self.attention = Attention(config, layer_id)
        self.feed_forward = FeedForward(config.dim, config.ffn_dim)
        self.attention_norm = RMSNorm(config.dim, config.norm_eps)
        self.ffn_norm = RMSNorm(config.dim, config.norm_eps)

    def forward(self, x, rope, document_ids=None, cache=None, start_pos=0):
        x = x + self.attention(self.attention_norm(x), rope, document_ids, cache, start_pos)
        return x + self.feed_forward(self.ffn_norm(x))

    def init_weights(self, small_std: float, wang_std: float):
        for linear in (self.attention.wq, self.attention.wk, self.attention.wv,
                       self.feed_forward.w1, self.feed_forward.w3):
            nn.init.normal_(linear.weight, mean=0.0, std=small_std)
        for linear in (self.attention.wo, self.feed_forward.w2):
            nn.init.normal_(linear.weight, mean=0.0, std=wang_std)
        self.attention_norm.init_weights()
        self.ffn_norm.init_weights()


class Llama(nn.Module):
    """Decoder-only LM. `forward(input_ids[B, T]) -> logits[B, T, vocab_size]`."""

    def __init__(self, config: LlamaConfig):
        super().__init__()
        self.config = config
        self.tok_embeddings = nn.Embedding(config.vocab_size, config.dim)
        self.rope = RotaryEmbedding(config.head_dim, config.max_seq_len, config.rope_theta)
        self.layers = nn.ModuleList(TransformerBlock(config, i) for i in range(config.n_layers))
        self.norm = RMSNorm(config.dim, config.norm_eps)
        self.output = nn.Linear(config.dim, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.output.weight = self.tok_embeddings.weight
        self.init_weights()

    def _apply(self, fn, recurse=True):
        # Materialising from meta (`to_empty`) makes a new Parameter per module unless torch's
        # swap-on-conversion is on; re-tie so the head keeps sharing the embedding.
        super()._apply(fn, recurse)
        if self.config.tie_embeddings and self.output.weight is not self.tok_embeddings.weight:
            self.output.weight = self.tok_embeddings.weight
        return self

    @property
    def init_stds(self) -> tuple[float, float]:
        """(small init std, wang init std) of this config; see the module docstring."""
        dim, n_layers = self.config.dim, self.config.n_layers
        return math.sqrt(2 / (5 * dim)), 2 / (n_layers * math.sqrt(dim))

    @torch.no_grad()
    def init_weights(self):
        """(Re)initialise every parameter and the rotary tables in place (works after
        `to_empty(device=...)` of a model built on the meta device)."""
        small_std, wang_std = self.init_stds
        nn.init.normal_(self.tok_embeddings.weight, mean=0.0, std=small_std)
        if not self.config.tie_embeddings:
            nn.init.normal_(self.output.weight, mean=0.0, std=small_std)
        for layer in self.layers:
            layer.init_weights(small_std, wang_std)
        self.norm.init_weights()
        self.rope.init_weights()

    def forward_hidden(self, input_ids: torch.Tensor, document_ids: torch.Tensor | None = None,
                       cache: KVCache | None = None, start_pos: int = 0) -> torch.Tensor:
        """Final-normed hidden states [B, T, dim] of input_ids [B, T] at positions start_pos...

        `document_ids` [B, start_pos + T] (same id = same document) confines attention to a
        document; `cache` holds keys/values of positions < start_pos and receives the new ones.
        """
        x = self.tok_embeddings(input_ids)
        rope = self.rope(start_pos, input_ids.shape[1])
        for layer in self.layers:
            x = layer(x, rope, document_ids, cache, start_pos)
        return self.norm(x)

    def forward(self, input_ids: torch.Tensor, document_ids: torch.Tensor | None = None,
                cache: KVCache | None = None, start_pos: int = 0) -> torch.Tensor:
        """Logits [B, T, vocab_size]; arguments as in `forward_hidden`."""
        return self.output(self.forward_hidden(input_ids, document_ids, cache, start_pos))

