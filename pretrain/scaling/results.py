"""The sweep results file: a CSV with one row per finished run.

Columns (DESIGN.md, "Sweep results"): ``params`` (all parameters), ``tokens`` (training
tokens), ``loss`` (final validation loss, nats/token) are required; ``non_embedding_params``,
``flops`` (training FLOPs 6·params·tokens; computed when absent or blank), ``run`` (a name),
``tokens_per_param``, ``budget`` (the planned isoFLOP budget, which groups runs for approach 2)
and ``holdout`` (1: a held-out run, predicted but never fitted) are optional. A file with
``flops`` but no ``tokens`` column is accepted too: tokens = flops / (6·params), the convention
of Chinchilla's isoFLOP data. Other column names map onto ours with ``columns`` (e.g.
``{"params": "Model Size"}``).

``count`` picks the N of the fit: ``total`` (the ``params`` column, the default: Chinchilla,
Epoch and Gadre et al. count every parameter) or ``non_embedding`` (``non_embedding_params``,
Kaplan et al.'s N; then C = 6·N·D and M = D/N are recomputed with that N).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pretrain.errors import PretrainError
from tokenizer.atomic import atomic_file

RESULTS_COLUMNS = ("run", "params", "non_embedding_params", "tokens", "loss", "flops",
                   "tokens_per_param", "budget", "holdout")
POSITIVE_COLUMNS = ("params", "non_embedding_params", "tokens", "loss", "flops", "budget")
PARAM_COUNTS = ("total", "non_embedding")


@dataclass(frozen=True)
class Results:
    """Validated points; every array has one entry per run, all positive and finite.
    ``params`` is N as ``count`` says; ``flops`` = 6·N·D unless the file gave them."""

    path: str
    params: np.ndarray
    tokens: np.ndarray
    loss: np.ndarray
    flops: np.ndarray
    run: list
    budget: np.ndarray | None  # planned isoFLOP budget per run, when the file has one
    holdout: np.ndarray | None = None  # bool per run: held out of every fit
    count: str = "total"

    def __len__(self) -> int:
        return len(self.params)

    @property
    def held_out(self) -> np.ndarray:
        return np.zeros(len(self), bool) if self.holdout is None else self.holdout

    def subset(self, mask) -> "Results":
        """The runs where ``mask`` is true (same path and count)."""
        mask = np.asarray(mask, bool)
        return Results(path=self.path, params=self.params[mask], tokens=self.tokens[mask],
                       loss=self.loss[mask], flops=self.flops[mask],
                       run=[r for r, keep in zip(self.run, mask) if keep],
                       budget=None if self.budget is None else self.budget[mask],
                       holdout=None if self.holdout is None else self.holdout[mask],
                       count=self.count)

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


def _flag(text: str, where: str) -> bool:
    value = text.strip().lower()
    if value in ("", "0", "false", "no"):
        return False
    if value in ("1", "true", "yes"):
        return True
    raise PretrainError(f"holdout must be 1 or 0 (true/false), got {text!r} ({where})")


def read_results(path, columns: dict | None = None, count: str = "total") -> Results:
    """Read and validate a results CSV; any problem is a one-line PretrainError naming the
    file, and the line for bad values."""
    path = Path(path)
    if count not in PARAM_COUNTS:
        raise PretrainError(f"--params must be one of {', '.join(PARAM_COUNTS)}, got {count!r}")
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
        if count == "non_embedding" and names["non_embedding_params"] not in header:
            missing.append(f"{names['non_embedding_params']} (asked for by --params "
                           f"non_embedding)")
        if missing:
            raise PretrainError(f"results file lacks column(s) {', '.join(missing)}; it has "
                                f"{', '.join(header) or 'no header'} ({path})")
        values = {c: [] for c in ("params", "tokens", "loss", "flops", "budget", "holdout")}
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
            if count == "non_embedding":  # the file's flops count all parameters
                params = _number(row.get(names["non_embedding_params"]) or "",
                                 "non_embedding_params", where)
                flops = None
            budget_text = (row.get(names["budget"]) or "").strip()
            values["holdout"].append(_flag(row.get(names["holdout"]) or "", where))
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
                   budget=None if np.isnan(budget).all() else budget,
                   holdout=np.array(values["holdout"], bool), count=count)


def write_csv_atomic(path, rows: list[dict], fieldnames) -> Path:
    """Write rows to ``path`` as CSV, all at once (`tokenizer.atomic`); returns ``path``."""
    with atomic_file(path, newline="") as handle:  # csv ends rows with \r\n itself
        writer = csv.DictWriter(handle, fieldnames=list(fieldnames), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return Path(path)
