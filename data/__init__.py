"""Corpus -> packed token shards + manifest, and the deterministic streaming dataset.

`data.shards` owns the on-disk format, `data.prepare` writes it, `data.dataset` streams it.
`StreamingTokenDataset` is imported lazily so that `import data` (the CLI's error handling)
does not import torch.
"""


class DataError(ValueError):
    """A user mistake about data: corrupt input, mismatched manifest; says what and where."""


__all__ = ["DataError", "StreamingTokenDataset"]


def __getattr__(name: str):
    if name == "StreamingTokenDataset":
        from data.dataset import StreamingTokenDataset

        return StreamingTokenDataset
    raise AttributeError(f"module 'data' has no attribute {name!r}")
