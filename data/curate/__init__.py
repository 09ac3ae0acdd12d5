"""`slm data curate`: quality filters, exact and MinHash near-dedup and a perplexity band from
our own reference model, run as datatrove pipelines (`data.curate.pipeline`).

datatrove and spaCy are optional (``pip install -e '.[curate]'``); `require_datatrove()`
turns their absence into one line naming the extra.
"""

from data import DataError


def require_datatrove() -> None:
    """Raise DataError naming the extra when datatrove or spaCy is missing."""
    import importlib.util

    missing = [name for name in ("datatrove", "spacy") if importlib.util.find_spec(name) is None]
    if missing:
        raise DataError(f"{' and '.join(missing)} not installed: pip install -e '.[curate]' "
                        f"(slm data curate)")
