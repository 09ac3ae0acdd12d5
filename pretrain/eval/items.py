"""Evaluation items, and reading task files line by line with ``file:line`` errors.

An :class:`Item` is what gets scored: for each choice ``i`` the log-likelihood of
``continuations[i]`` after ``contexts[i]``. All choices share one context except in
WinoGrande-style partial scoring (one context per choice, one shared continuation).

The generic format (any task name that is not a known benchmark), one JSON object per line::

    {"query": str, "choices": [str, ...], "gold": int}

choice ``i`` is scored as the continuation ``choices[i]`` appended to ``query`` exactly as it
is (no separator is added), and ``acc_norm`` divides by ``len(choices[i])`` characters.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from pretrain.errors import PretrainError

MULTIPLE_CHOICE = "multiple_choice"  # acc = the gold choice has the highest log-likelihood
GREEDY = "greedy"  # one continuation; acc = it is the model's greedy decode (LAMBADA)


@dataclass(frozen=True)
class Item:
    """One question. ``index`` is its 0-based line number in the file (array position in a
    ``.json`` array); ``norm_chars[i]`` is the divisor of choice i's log-likelihood for
    ``acc_norm`` (lm-evaluation-harness divides by the choice's length without the space it
    puts before it, so a benchmark loader sets it; generic items use the continuation's)."""

    index: int
    contexts: tuple[str, ...]
    continuations: tuple[str, ...]
    gold: int
    norm_chars: tuple[int, ...]

    @property
    def n_choices(self) -> int:
        return len(self.continuations)


@dataclass(frozen=True)
class Task:
    """A named list of items read from ``path``; ``kind`` is MULTIPLE_CHOICE or GREEDY."""

    name: str
    path: Path
    items: tuple[Item, ...]
    kind: str = MULTIPLE_CHOICE


def shared_context_item(index: int, context: str, continuations: list[str], gold: int,
                        norm_chars: list[int] | None = None) -> Item:
    """An item whose choices all continue the same context."""
    norm = norm_chars if norm_chars is not None else [len(c) for c in continuations]
    return Item(index, (context,) * len(continuations), tuple(continuations), gold, tuple(norm))


def read_records(path: Path) -> Iterator[tuple[int, str, dict]]:
    """(0-based index, "file:line" for messages, object) for each record of a ``.jsonl`` file
    (blank lines skipped, still counted) or of a ``.json`` file holding one array of objects
    (SciQ's release). PretrainError for a missing file, bad JSON or a record not an object."""
    if not path.is_file():
        raise PretrainError(f"task file not found ({path})")
    if path.suffix == ".json":
        yield from _json_array_records(path)
        return
    with path.open(encoding="utf-8", errors="strict") as f:
        try:
            for number, line in enumerate(f):
                if not line.strip():
                    continue
                where = f"{path}:{number + 1}"
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as e:
                    raise PretrainError(f"not JSON: {e.msg} at column {e.colno} ({where})") from None
                if not isinstance(record, dict):
                    raise PretrainError(f"not a JSON object ({where})")
                yield number, where, record
        except UnicodeDecodeError as e:
            raise PretrainError(f"not UTF-8 text: {e.reason} ({path})") from None


def _json_array_records(path: Path) -> Iterator[tuple[int, str, dict]]:
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise PretrainError(f"not JSON: {e.msg} ({path}:{e.lineno})") from None
    except UnicodeDecodeError as e:
        raise PretrainError(f"not UTF-8 text: {e.reason} ({path})") from None
    if not isinstance(records, list):
        raise PretrainError(f"a .json task file must hold one array of objects ({path})")
    for number, record in enumerate(records):
        where = f"{path}: item {number}"
        if not isinstance(record, dict):
            raise PretrainError(f"not a JSON object ({where})")
        yield number, where, record


def field(record: dict, key: str, kind: type | tuple[type, ...], where: str):
    """``record[key]``, which must be of ``kind`` (bool is not an int here)."""
    if key not in record:
        raise PretrainError(f"missing key {key!r} ({where})")
    value = record[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        names = " or ".join(k.__name__ for k in kinds)
        raise PretrainError(f"{key!r} must be {names}, got {type(value).__name__} ({where})")
    return value


def check_gold(gold: int, n_choices: int, where: str) -> int:
    if n_choices == 0:
        raise PretrainError(f"no choices ({where})")
    if not 0 <= gold < n_choices:
        raise PretrainError(f"gold {gold} out of range for {n_choices} choices ({where})")
    return gold


def generic_item(index: int, where: str, record: dict) -> Item:
    """An item of the generic format (module docstring)."""
    query = field(record, "query", str, where)
    choices = field(record, "choices", list, where)
    gold = field(record, "gold", int, where)
    for i, choice in enumerate(choices):
        if not isinstance(choice, str):
            raise PretrainError(f"choice {i} must be str, got {type(choice).__name__} ({where})")
        if not choice:
            raise PretrainError(f"choice {i} is empty: there is nothing to score ({where})")
    check_gold(gold, len(choices), where)
    return shared_context_item(index, query, choices, gold)
