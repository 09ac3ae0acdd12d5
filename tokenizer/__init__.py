"""Sentencepiece BPE tokenizers: train, load, encode; exported so transformers loads them too."""


class TokenizerError(ValueError):
    """A user mistake about a tokenizer or its training corpus; message says what and where."""
