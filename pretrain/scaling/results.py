"""The sweep results file: a CSV with one row per finished run.

Columns (DESIGN.md, "Sweep results"): ``params`` (non-embedding parameters), ``tokens``
(training tokens), ``loss`` (final validation loss, nats/token) are required; ``flops``
(training FLOPs; 6·params·tokens when absent or blank), ``run`` (a name), ``tokens_per_param``
and ``budget`` (the planned isoFLOP budget, which groups runs for approach 2) are optional.
A file with ``flops`` but no ``tokens`` column is accepted too: tokens = flops / (6·params), the
convention of Chinchilla's isoFLOP data. Other column names map onto ours with ``columns``
(e.g. ``{"params": "Model Size"}``).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pretrain.errors import PretrainError
from tokenizer.atomic import atomic_file

RESULTS_COLUMNS = ("run", "params", "tokens", "loss", "flops", "tokens_per_param", "budget")
POSITIVE_COLUMNS = ("params", "tokens", "loss", "flops", "budget")


@dataclass(frozen=True)
class Results:
    """Validated points; every array has one entry per run, all positive and finite."""

    path: str
    params: np.ndarray
    tokens: np.ndarray
    loss: np.ndarray
    flops: np.ndarray
    run: list
    budget: np.ndarray | None  # planned isoFLOP budget per run, when the file has one

    def __len__(self) -> int:
        return len(self.params)

    @property
    def tokens_per_param(self) -> np.ndarray:
        return self.tokens / self.params


def parse_column_map(text: str | None) -> dict:
    """``"params=Model Size,loss=Loss"`` → ``{"params": "Model Size", "loss": "Loss"}``."""
    if not text:
        return {}
    mapping = {}
    for item in text.split(","):
        ours, sep, theirs = item.partition("=")
        if not sep or ours.strip() not in RESULTS_COLUMNS or not theirs.strip():
            raise PretrainError(f"bad column mapping {item!r}: expected OURS=THEIRS with OURS "
                                f"one of {', '.join(RESULTS_COLUMNS)} (--columns)")
        mapping[ours.strip()] = theirs.strip()
    return mapping


def _number(text: str, column: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise PretrainError(f"{column} is not a number: {text!r} ({where})") from None
    if column in POSITIVE_COLUMNS and not (math.isfinite(value) and value > 0):
        raise PretrainError(f"{column} must be positive and finite, got {text!r} ({where})")
    return value


def read_results(path, columns: dict | None = None) -> Results:
    """Read and validate a results CSV; any problem is a one-line PretrainError naming the
    file, and the line for bad values."""
    path = Path(path)
    names = {ours: (columns or {}).get(ours, ours) for ours in RESULTS_COLUMNS}
    if not path.is_file():
        raise PretrainError(f"results file not found ({path})")
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header = [name.strip() for name in (reader.fieldnames or [])]
        reader.fieldnames = header
        missing = [names[c] for c in ("params", "loss") if names[c] not in header]
        if names["tokens"] not in header and names["flops"] not in header:
            missing.append(f"{names['tokens']} (or {names['flops']})")
        if missing:
            raise PretrainError(f"results file lacks column(s) {', '.join(missing)}; it has "
                                f"{', '.join(header) or 'no header'} ({path})")
        values = {c: [] for c in ("params", "tokens", "loss", "flops", "budget")}
        runs = []
        for line, row in enumerate(reader, start=2):
            where = f"{path}:{line}"
            if not any((v or "").strip() for v in row.values()):
                continue  # a blank line
            params = _number(row.get(names["params"]) or "", "params", where)
            loss = _number(row.get(names["loss"]) or "", "loss", where)
            flops_text = (row.get(names["flops"]) or "").strip()
            tokens_text = (row.get(names["tokens"]) or "").strip()
            flops = _number(flops_text, "flops", where) if flops_text else None
            if tokens_text or flops is None:
                tokens = _number(tokens_text, "tokens", where)
            else:
                tokens = flops / (6.0 * params)
            budget_text = (row.get(names["budget"]) or "").strip()
            values["params"].append(params)
            values["tokens"].append(tokens)
            values["loss"].append(loss)
            values["flops"].append(flops if flops is not None else 6.0 * params * tokens)
            values["budget"].append(_number(budget_text, "budget", where) if budget_text
                                    else math.nan)
            runs.append((row.get(names["run"]) or "").strip() or f"row{line}")
    if not runs:
        raise PretrainError(f"results file has no rows ({path})")
    budget = np.array(values["budget"])
    return Results(path=str(path), params=np.array(values["params"]),
                   tokens=np.array(values["tokens"]), loss=np.array(values["loss"]),
                   flops=np.array(values["flops"]), run=runs,
                   budget=None if np.isnan(budget).any() else budget)


def write_csv_atomic(path, rows: list[dict], fieldnames) -> Path:
    """Write rows to ``path`` as CSV, all at once (`tokenizer.atomic`); returns ``path``."""
    with atomic_file(path, newline="") as handle:  # csv ends rows with \r\n itself
        writer = csv.DictWriter(handle, fieldnames=list(fieldnames), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return Path(path)
