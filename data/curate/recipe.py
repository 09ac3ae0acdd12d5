"""A curation recipe (YAML) → a checked `Recipe`; every key is validated before any work.

```yaml
filters:                    # applied in this order; each name once
  - gopher_quality: {min_doc_words: 50}
  - code: {}                # StarCoder's thresholds unless given
dedup:
  exact: true               # identical texts (any length)
  minhash: {n_grams: 5, buckets: 14, hashes_per_bucket: 8}
band:                       # optional: perplexity band of a reference model (Ankner et al.)
  tokenizer: PATH           # the tokenizer the reference model was trained with
  keep: medium              # low | medium | high perplexity
  fraction: 0.5             # of the deduplicated documents
samples_per_reason: 5       # removed documents kept under DIR/removed/ for reading
```

Filter parameters are the keyword arguments of the filter class named in `FILTERS`; a key it
does not take, or a value of the wrong kind, is a `DataError` naming the key and the file.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path

from data import DataError

# recipe name -> (module, class). All run offline: words are split by spaCy's blank English
# pipeline (datatrove's choice for "en"); C4's bad-words filter is left out because it
# downloads its word lists at run time.
FILTERS = {
    "gopher_quality": ("datatrove.pipeline.filters", "GopherQualityFilter"),
    "gopher_repetition": ("datatrove.pipeline.filters", "GopherRepetitionFilter"),
    "c4_quality": ("datatrove.pipeline.filters", "C4QualityFilter"),
    "fineweb_quality": ("datatrove.pipeline.filters", "FineWebQualityFilter"),
    "code": ("data.curate.code_filter", "CodeFilter"),
}
# Constructor arguments that are ours to set, not the recipe's.
_RESERVED_ARGS = {"self", "exclusion_writer", "language", "batch_size"}

BANDS = ("low", "medium", "high")
_TOP_KEYS = {"filters", "dedup", "band", "samples_per_reason"}
_DEDUP_KEYS = {"exact", "minhash"}
_MINHASH_KEYS = {"n_grams", "buckets", "hashes_per_bucket", "seed"}
_BAND_KEYS = {"tokenizer", "keep", "fraction", "max_tokens"}


@dataclass(frozen=True)
class MinhashSettings:
    """datatrove's defaults: 5-word shingles, 14 bands of 8 hashes (pairs above ~0.8 Jaccard
    similarity are found with probability > 0.9; at 0.7, ~0.5)."""

    n_grams: int = 5
    buckets: int = 14
    hashes_per_bucket: int = 8
    seed: int = 1


@dataclass(frozen=True)
class BandSettings:
    tokenizer: str
    keep: str = "medium"
    fraction: float = 0.5
    max_tokens: int = 1024  # a document is scored on its first `max_tokens` tokens


@dataclass(frozen=True)
class Recipe:
    path: str
    filters: tuple[tuple[str, dict], ...] = ()
    exact_dedup: bool = False
    minhash: MinhashSettings | None = None
    band: BandSettings | None = None
    samples_per_reason: int = 5
    raw: dict = field(default_factory=dict, compare=False)


def load_recipe(path: str | Path) -> Recipe:
    """Parse and check the recipe at `path`; raises DataError ("what (path: key)")."""
    import yaml

    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise DataError(f"cannot read recipe: {e.strerror} ({path})") from None
    except yaml.YAMLError as e:
        raise DataError(f"recipe is not valid YAML: {str(e).splitlines()[0]} ({path})") from None
    raw = {} if raw is None else raw
    where = str(path)
    _mapping(raw, where, "the recipe")
    _known_keys(raw, _TOP_KEYS, where, "")
    filters = tuple(_filter(entry, where, i) for i, entry in enumerate(raw.get("filters") or []))
    names = [name for name, _ in filters]
    if len(set(names)) != len(names):
        raise DataError(f"a filter is listed twice: {', '.join(names)} ({where}: filters)")
    if raw.get("filters") is not None and not isinstance(raw["filters"], list):
        raise DataError(f"'filters' must be a list of {{name: {{parameters}}}} ({where}: filters)")

    dedup = raw.get("dedup") or {}
    _mapping(dedup, where, "dedup")
    _known_keys(dedup, _DEDUP_KEYS, where, "dedup.")
    exact = dedup.get("exact", False)
    if not isinstance(exact, bool):
        raise DataError(f"dedup.exact must be true or false, got {exact!r} ({where}: dedup.exact)")
    minhash = None
    if dedup.get("minhash") not in (None, False):
        settings = {} if dedup["minhash"] is True else dedup["minhash"]
        _mapping(settings, where, "dedup.minhash")
        _known_keys(settings, _MINHASH_KEYS, where, "dedup.minhash.")
        for key, value in settings.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise DataError(f"dedup.minhash.{key} must be a positive integer, got {value!r} "
                                f"({where}: dedup.minhash.{key})")
        minhash = MinhashSettings(**settings)

    band = None
    if raw.get("band") is not None:
        settings = raw["band"]
        _mapping(settings, where, "band")
        _known_keys(settings, _BAND_KEYS, where, "band.")
        if "tokenizer" not in settings:
            raise DataError(f"band needs the reference model's tokenizer ({where}: band.tokenizer)")
        if settings.get("keep", "medium") not in BANDS:
            raise DataError(f"band.keep must be one of {', '.join(BANDS)}, got "
                            f"{settings['keep']!r} ({where}: band.keep)")
        fraction = settings.get("fraction", 0.5)
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) \
                or not 0 < fraction <= 1:
            raise DataError(f"band.fraction must be in (0, 1], got {fraction!r} "
                            f"({where}: band.fraction)")
        max_tokens = settings.get("max_tokens", 1024)
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 2:
            raise DataError(f"band.max_tokens must be an integer >= 2, got {max_tokens!r} "
                            f"({where}: band.max_tokens)")
        tokenizer = Path(str(settings["tokenizer"]))
        if not tokenizer.is_absolute():  # relative to the recipe, like an include
            candidate = path.parent / tokenizer
            tokenizer = candidate if candidate.exists() else tokenizer
        band = BandSettings(str(tokenizer), settings.get("keep", "medium"), float(fraction),
                            max_tokens)

    samples = raw.get("samples_per_reason", 5)
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 0:
        raise DataError(f"samples_per_reason must be an integer >= 0, got {samples!r} "
                        f"({where}: samples_per_reason)")
    if not filters and not exact and minhash is None and band is None:
        raise DataError(f"the recipe names no filter, no dedup and no band: nothing to do "
                        f"({where})")
    return Recipe(where, filters, exact, minhash, band, samples, raw)


def filter_class(name: str):
    """The filter class behind a recipe name (imports datatrove)."""
    import importlib

    module, cls = FILTERS[name]
    return getattr(importlib.import_module(module), cls)


def _filter(entry, where: str, index: int) -> tuple[str, dict]:
    if isinstance(entry, str):
        entry = {entry: {}}
    if not isinstance(entry, dict) or len(entry) != 1:
        raise DataError(f"each filter is one 'name: {{parameters}}' entry, got {entry!r} "
                        f"({where}: filters[{index}])")
    (name, params), = entry.items()
    if name not in FILTERS:
        raise DataError(f"unknown filter '{name}', expected one of {', '.join(FILTERS)} "
                        f"({where}: filters[{index}])")
    params = params or {}
    _mapping(params, where, f"filters.{name}")
    signature = inspect.signature(filter_class(name).__init__)
    allowed = {k: p for k, p in signature.parameters.items() if k not in _RESERVED_ARGS}
    for key, value in params.items():
        if key not in allowed:
            raise DataError(f"unknown parameter '{key}' for filter {name}, expected one of "
                            f"{', '.join(allowed)} ({where}: filters.{name}.{key})")
        _check_kind(value, allowed[key].default, f"{where}: filters.{name}.{key}")
    return name, _tuples(params)


def _check_kind(value, default, where: str) -> None:
    """A value of the default's kind (numbers interchangeable, None allowed where the default is
    a threshold that can be switched off)."""
    if value is None or default is None or default is inspect.Parameter.empty:
        return
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, (int, float)):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif isinstance(default, (list, tuple)):
        ok = isinstance(value, (list, tuple))
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise DataError(f"expected a value like {default!r}, got {value!r} ({where})")


def _tuples(value):
    """YAML lists → tuples (datatrove's n-gram thresholds are tuples of tuples)."""
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value


def _mapping(value, where: str, what: str) -> None:
    if not isinstance(value, dict):
        raise DataError(f"{what} must be a mapping, got {type(value).__name__} ({where})")


def _known_keys(mapping: dict, known: set[str], where: str, prefix: str) -> None:
    for key in mapping:
        if key not in known:
            raise DataError(f"unknown key '{prefix}{key}', expected one of "
                            f"{', '.join(sorted(known))} ({where}: {prefix}{key})")
