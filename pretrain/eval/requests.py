"""Items → token requests, tokenised exactly as lm-evaluation-harness 0.4's ``hf`` backend does.

For a (context, continuation) pair (``HFLM._encode_pair`` and ``loglikelihood``):
- trailing whitespace of the context moves to the start of the continuation;
- context + continuation are encoded together and split at the context's own token count
  (so a token spanning the boundary belongs to the continuation);
- BOS first when ``bos`` (``pretrain.eval.bos``: lm-eval's ``add_bos_token``, by default what
  the tokenizer's files say), except before a text that already starts with BOS's own text
  (``<s>``), as lm-eval's ``tok_encode`` skips it there;
- an empty context is scored after the prefix token (BOS if the tokenizer has one, else EOS,
  as lm-eval 0.4.13's ``prefix_token_id``), or after the continuation's first token when the
  continuation starts with it, whatever ``bos``;
- context + continuation longer than the model's positions + 1 are cut from the left
  (``truncated``); a continuation longer than the model's positions is an error.
"""

from __future__ import annotations

from dataclasses import dataclass

from pretrain.errors import PretrainError
from pretrain.eval.items import Item


@dataclass(frozen=True)
class Request:
    """One scored continuation: the model reads ``tokens[:-1]`` (positions from 0) and the last
    ``n_continuation`` of ``tokens`` are scored. ``n_bytes``: UTF-8 bytes of the scored text."""

    tokens: tuple[int, ...]
    n_continuation: int
    n_bytes: int
    truncated: bool


def encode_pair(tokenizer, context: str, continuation: str, bos: bool = False) -> tuple[list[int], list[int], str]:
    """(context ids, continuation ids, the continuation text actually scored)."""
    if context == "":
        ids = tokenizer.encode(continuation)
        prefix = tokenizer.bos_id if tokenizer.bos_id is not None and tokenizer.bos_id >= 0 else tokenizer.eos_id
        if ids and ids[0] == prefix:
            return ids[:1], ids[1:], continuation
        return [prefix], ids, continuation
    spaces = len(context) - len(context.rstrip())
    if spaces:
        context, continuation = context[:-spaces], context[-spaces:] + continuation
    if bos and tokenizer.bos_id < 0:
        raise PretrainError("the tokenizer has no BOS token to put first (--bos)")
    bos_text = tokenizer.id_to_piece(tokenizer.bos_id) if bos else ""

    def start(text: str) -> list[int]:
        return [tokenizer.bos_id] if bos and not text.startswith(bos_text) else []

    whole = start(context + continuation) + tokenizer.encode(context + continuation)
    context_ids = start(context) + tokenizer.encode(context)
    return context_ids, whole[len(context_ids):], continuation


def item_requests(item: Item, tokenizer, max_seq_len: int, bos: bool = False,
                  where: str = "") -> list[Request]:
    """The requests of ``item``'s choices, in choice order."""
    requests = []
    for choice, (context, continuation) in enumerate(zip(item.contexts, item.continuations)):
        context_ids, continuation_ids, scored = encode_pair(tokenizer, context, continuation, bos)
        if not continuation_ids:
            raise PretrainError(f"choice {choice} of item {item.index} has no token of its own "
                                f"after the context ({where})")
        if len(continuation_ids) > max_seq_len:
            raise PretrainError(f"choice {choice} of item {item.index} is {len(continuation_ids)} "
                                f"tokens, more than the model's {max_seq_len} positions ({where})")
        tokens = context_ids + continuation_ids
        window = tokens[-(max_seq_len + 1):]
        requests.append(Request(tuple(window), len(continuation_ids), len(scored.encode("utf-8")),
                                truncated=len(window) < len(tokens)))
    return requests
