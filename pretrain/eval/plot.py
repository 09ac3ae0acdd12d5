"""``RUN_DIR/eval.png``: each task's headline accuracy against training tokens (one panel per
task, ± one standard error), as TinyLlama's Figure 2 tracks its intermediate checkpoints."""

from __future__ import annotations

import math
import os
from pathlib import Path

from pretrain.eval.benchmarks import headline_metric
from pretrain.eval.eval_csv import EVAL_CSV, read_rows
from tokenizer.atomic import atomic_file

EVAL_PLOT = "eval.png"


def plot_eval(run_dir: str | os.PathLike) -> Path | None:
    """Draw ``RUN_DIR/eval.csv`` into ``RUN_DIR/eval.png`` (atomically); None if no rows."""
    run_dir = Path(run_dir)
    rows = read_rows(run_dir / EVAL_CSV)
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted({r["task"] for r in rows})
    columns = min(len(tasks), 4)
    lines = math.ceil(len(tasks) / columns)
    fig, axes = plt.subplots(lines, columns, figsize=(3.6 * columns, 3.0 * lines), dpi=110,
                             squeeze=False)
    for ax, task in zip(axes.flat, tasks):
        metric = headline_metric(task)
        points = sorted((int(r["tokens"]), float(r[metric]), float(r[f"{metric}_stderr"] or 0))
                        for r in rows if r["task"] == task and r[metric] != "")
        if points:
            tokens, values, errors = zip(*points)
            ax.errorbar(tokens, values, yerr=errors, fmt="o-", ms=3, lw=1.3, capsize=2)
        ax.set_title(f"{task} ({metric})", fontsize=9)
        ax.set_xlabel("training tokens", fontsize=8)
        ax.set_ylabel("accuracy", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(tasks):]:
        ax.set_visible(False)
    fig.suptitle(f"{run_dir.name}: downstream accuracy", fontsize=10)
    fig.tight_layout()
    out = run_dir / EVAL_PLOT
    with atomic_file(out, "wb") as f:
        fig.savefig(f, format="png")
    plt.close(fig)
    return out
