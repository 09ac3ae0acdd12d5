"""``RUN_DIR/eval.csv``: one row per (evaluated step, task), written by ``slm eval`` on a run
directory and by the in-loop ``DownstreamEval`` callback alike.

Rewritten whole and atomically on each update; a new row replaces one of the same step and
task (a re-evaluation, or a step trained again after a resume), so the file never holds two
answers for one question. ``bos`` (true/false) and ``bos_source`` (``tokenizer``: its files,
lm-eval's default; ``flag``: --bos/--no-bos) say how the contexts began; a row of another BOS
setting does not count as done (older files without the column neither).
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from pretrain.eval.bos import Bos
from tokenizer.atomic import write_atomic

EVAL_CSV = "eval.csv"
COLUMNS = ("step", "tokens", "task", "n", "acc", "acc_stderr", "acc_norm", "acc_norm_stderr",
           "bpb", "bpb_stderr", "perplexity", "truncated", "bos", "bos_source", "source", "wall_s")
METRICS = ("acc", "acc_norm", "bpb")


def bos_cell(bos: bool) -> str:
    return "true" if bos else "false"


def result_rows(step: int, tokens: int, results: dict[str, dict], source: str,
                wall_s: float | None, bos: Bos) -> list[dict]:
    """Rows for the ``results`` ({task: metrics}) of the model after ``step`` steps / ``tokens``
    tokens, scored with ``bos``; ``source`` is the checkpoint's name, or ``in-loop``."""
    rows = []
    for task, m in results.items():
        row = {"step": step, "tokens": tokens, "task": task, "n": m["n"],
               "truncated": m["truncated"], "perplexity": m.get("perplexity"),
               "bos": bos_cell(bos.bos), "bos_source": bos.source, "source": source,
               "wall_s": None if wall_s is None else round(wall_s, 3)}
        for key in METRICS:
            row[key] = m[key]
            row[f"{key}_stderr"] = m["stderr"][key]
        rows.append({k: ("" if v is None else v) for k, v in row.items()})
    return rows


def read_rows(path: str | os.PathLike) -> list[dict[str, str]]:
    """The rows of an eval.csv as dicts of strings ("" = none); [] when there is no file."""
    path = Path(path)
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def merge_rows(path: str | os.PathLike, rows: list[dict]) -> Path:
    """Add ``rows`` to the file at ``path`` (replacing rows of the same step and task)."""
    new_keys = {(int(r["step"]), r["task"]) for r in rows}
    kept = [r for r in read_rows(path) if (int(r["step"]), r["task"]) not in new_keys]
    merged = sorted(kept + [{k: str(v) for k, v in r.items()} for r in rows],
                    key=lambda r: (int(r["tokens"]), int(r["step"]), r["task"]))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(merged)
    return write_atomic(path, out.getvalue())


def is_evaluated(rows: list[dict[str, str]], step: int, task: str, n: int, bos: bool) -> bool:
    """Whether ``rows`` already hold task ``task`` on ``n`` items at ``step``, scored with BOS
    first or not as ``bos`` says."""
    return any(int(r["step"]) == step and r["task"] == task and int(r["n"]) == n
               and r.get("bos") == bos_cell(bos) for r in rows)


def results_from_rows(rows: list[dict[str, str]], step: int, tasks: list[str]) -> dict[str, dict]:
    """{task: metrics} of ``tasks`` at ``step`` as ``--json`` prints them, from eval.csv rows."""
    def number(text: str) -> float | None:
        return float(text) if text != "" else None

    results = {}
    for r in rows:
        if int(r["step"]) != step or r["task"] not in tasks:
            continue
        m = {key: number(r[key]) for key in METRICS}
        m["stderr"] = {key: number(r[f"{key}_stderr"]) for key in METRICS}
        m["n"], m["truncated"] = int(r["n"]), int(r["truncated"])
        if r.get("perplexity"):
            m["perplexity"] = float(r["perplexity"])
        results[r["task"]] = m
    return results
