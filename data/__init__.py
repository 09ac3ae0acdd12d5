"""Corpus -> packed token shards + manifest, and the deterministic streaming dataset."""


class DataError(ValueError):
    """A user mistake about data: corrupt input, mismatched manifest; says what and where."""
