"""Sentencepiece BPE tokenizers: train, load, encode; exported so transformers loads them too.

`load(path) -> Tokenizer` and `train(inputs, vocab_size, output, ...) -> Path`; corpus
readers shared with `data` live in `tokenizer.corpus`.
"""


class TokenizerError(ValueError):
    """A user mistake about a tokenizer or its training corpus; message says what and where."""


from tokenizer.sentencepiece_tokenizer import Tokenizer, load  # noqa: E402
from tokenizer.train import train  # noqa: E402

__all__ = ["Tokenizer", "TokenizerError", "load", "train"]
