"""Encoding throughput of `Tokenizer` against bare sentencepiece on the same texts
(`slm tokenizer bench`): the wrapper's cost is the gap between the two."""

from __future__ import annotations

import time
from itertools import islice
from pathlib import Path
from typing import Callable, Iterable

from tokenizer.corpus import expand_inputs, iter_documents
from tokenizer.sentencepiece_tokenizer import Tokenizer


def read_texts(inputs: Iterable[str | Path], max_documents: int, text_key: str = "text",
               ) -> list[str]:
    """Up to `max_documents` documents from corpus inputs (files, dirs, globs)."""
    def documents():
        for path in expand_inputs(inputs):
            yield from iter_documents(path, text_key=text_key)

    return list(islice(documents(), max_documents))


def _best_cpu_seconds(run: Callable[[], object], repeats: int) -> float:
    """Least process CPU time (all threads) of `repeats` runs. CPU time, not wall time, is
    what "per core" means, and it is much less disturbed by other work on a shared machine."""
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        run()
        best = min(best, time.process_time() - start)
    return best


def measure_throughput(tokenizer: Tokenizer, texts: list[str], *, batch_size: int = 256,
                       threads: int = 1, repeats: int = 3) -> dict:
    """Tokens per CPU second of four ways to encode `texts` (each the best of `repeats` runs);
    with threads=1 that is the per-core throughput.

    `sentencepiece_encode` / `tokenizer_encode`: one call per text; `sentencepiece_batch` /
    `tokenizer_encode_batch`: batches of `batch_size` texts on `threads` threads. The
    `*_overhead` fields are 1 - ours/raw (0.05 = the wrapper costs 5%).
    """
    import sentencepiece

    raw = sentencepiece.SentencePieceProcessor(model_file=str(tokenizer.model_file))
    ours = Tokenizer(tokenizer.model_file, num_threads=threads)
    batches = [texts[i:i + batch_size] for i in range(0, len(texts), batch_size)]
    tokens = sum(len(ids) for ids in ours.encode_batch(texts))
    ways = {
        "sentencepiece_encode": lambda: [raw.encode(t) for t in texts],
        "tokenizer_encode": lambda: [ours.encode(t) for t in texts],
        "sentencepiece_batch": lambda: [raw.encode(b, num_threads=threads) for b in batches],
        "tokenizer_encode_batch": lambda: [ours.encode_batch(b) for b in batches],
    }
    tokens_per_s = {name: tokens / _best_cpu_seconds(run, repeats) for name, run in ways.items()}
    return {
        "documents": len(texts),
        "characters": sum(map(len, texts)),
        "tokens": tokens,
        "threads": threads,
        "batch_size": batch_size,
        "tokens_per_s": tokens_per_s,
        "encode_overhead": 1 - tokens_per_s["tokenizer_encode"]
        / tokens_per_s["sentencepiece_encode"],
        "encode_batch_overhead": 1 - tokens_per_s["tokenizer_encode_batch"]
        / tokens_per_s["sentencepiece_batch"],
    }
