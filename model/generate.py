"""Autoregressive sampling with a KV cache: greedy, temperature, top-k and top-p (nucleus)."""

from __future__ import annotations

import torch

from model.config import ModelError
from model.llama import KVCache, Llama


def sample_next(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                top_p: float | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Next token ids [B] from last-position logits [B, vocab]. `temperature == 0` or
    `top_k == 1` is greedy (argmax); otherwise sample from softmax(logits / temperature) after
    keeping the `top_k` most likely tokens and then the smallest set whose probability reaches
    `top_p` (the most likely token always survives)."""
    if temperature == 0 or top_k == 1:
        return logits.argmax(dim=-1)
    logits = logits.float() / temperature
    if top_k is not None:
        kth_best = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth_best, float("-inf"))
    if top_p is not None:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        # Drop a token when the tokens strictly more likely already reach top_p.
        drop = probs.cumsum(dim=-1) - probs >= top_p
        logits = logits.scatter(-1, order, sorted_logits.masked_fill(drop, float("-inf")))
    probs = logits.softmax(dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(-1)


@torch.no_grad()
def generate(model: Llama, input_ids: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
             top_k: int | None = None, top_p: float | None = None, eos_id: int | None = None,
             generator: torch.Generator | None = None) -> torch.LongTensor:
    """Continue the prompts input_ids [B, T] (or [T]) by up to `max_new_tokens` tokens.

    Returns prompt + continuation, [B, T + n] (or [T + n]), n <= max_new_tokens. A sequence that
    produced `eos_id` is finished: it is padded with `eos_id` while the others go on, and
    generation stops early once all are finished. Sampling draws from `generator` (seeded
    generator = reproducible output). Raises `ModelError` if T + max_new_tokens exceeds the
    model's max_seq_len or an argument is out of range.
    """
    squeeze = input_ids.dim() == 1
    tokens = input_ids[None] if squeeze else input_ids
    batch_size, prompt_len = tokens.shape
    total_len = prompt_len + max_new_tokens
    if prompt_len == 0 or max_new_tokens < 0:
        raise ModelError(f"need a non-empty prompt and max_new_tokens >= 0, got prompt length "
                         f"{prompt_len}, max_new_tokens {max_new_tokens}")
    if total_len > model.config.max_seq_len:
        raise ModelError(f"prompt ({prompt_len}) + max_new_tokens ({max_new_tokens}) exceeds the "
                         f"model's max_seq_len {model.config.max_seq_len}")
    if temperature < 0 or (top_k is not None and top_k < 1) or (
            top_p is not None and not 0 < top_p <= 1):
        raise ModelError(f"need temperature >= 0, top_k >= 1, 0 < top_p <= 1; got {temperature}, "
                         f"{top_k}, {top_p}")

    weight = model.tok_embeddings.weight
    cache = KVCache(model.config, batch_size, total_len, device=weight.device, dtype=weight.dtype)
    finished = torch.zeros(batch_size, dtype=torch.bool, device=tokens.device)
    next_input, start_pos = tokens, 0
    for _ in range(max_new_tokens):
        logits = model(next_input, cache=cache, start_pos=start_pos)[:, -1]
        next_token = sample_next(logits, temperature, top_k, top_p, generator)
        if eos_id is not None:
            next_token = next_token.masked_fill(finished, eos_id)
            finished |= next_token == eos_id
        tokens = torch.cat([tokens, next_token[:, None]], dim=1)
        start_pos += next_input.shape[1]
        next_input = next_token[:, None]
        if eos_id is not None and bool(finished.all()):
            break
    return tokens[0] if squeeze else tokens
