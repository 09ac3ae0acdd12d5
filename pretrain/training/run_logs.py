"""What a run writes for humans: ``RUN_DIR/metrics.csv`` and ``RUN_DIR/loss.png``.

Lightning's own CSVLogger nests files under ``name/version/`` and rewrites its header whenever a
new key appears; researchers (and the sweep/release tooling) want one flat file with fixed
columns at a known path that survives kill-and-resume, so this is a small logger of our own.
"""

from __future__ import annotations

import csv
import logging
import math
import os
from pathlib import Path

from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities import rank_zero_only

from tokenizer.atomic import atomic_file

log = logging.getLogger(__name__)

METRICS_NAME = "metrics.csv"
LOSS_PLOT_NAME = "loss.png"
# One row per log step (train columns filled) and one per validation (val_* filled).
COLUMNS = ("step", "tokens_seen", "loss", "ce", "kl", "val_loss", "val_ppl", "val_bpb", "lr", "grad_norm",
           "tokens_per_s", "mfu", "memory_allocated_gb", "memory_reserved_gb", "skipped_steps", "rewinds",
           "elapsed_s", "noise_scale_tokens", "noise_scale_sequences", "noise_grad_sq", "noise_trace")


class MetricsCSVLogger(Logger):
    """Appends rows to ``RUN_DIR/metrics.csv`` (flushed per row, so a killed run keeps its rows).

    On the first row a process writes at step ``s``, rows already in the file with step ≥ ``s``
    are dropped: after a resume from the checkpoint at step ``s - 1`` they belong to the lost
    tail of the killed run and are about to be logged again.
    """

    def __init__(self, run_dir: str | os.PathLike):
        super().__init__()
        self._path = Path(run_dir) / METRICS_NAME
        self._started = False

    @property
    def name(self) -> str:
        return "metrics_csv"

    @property
    def version(self) -> str:
        return ""

    @property
    def save_dir(self) -> str:
        return str(self._path.parent)

    @property
    def log_dir(self) -> str:
        return str(self._path.parent)

    @rank_zero_only
    def log_hyperparams(self, params, *args, **kwargs) -> None:
        """The resolved config is saved as RUN_DIR/config.yaml by the CLI; nothing to do here."""

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        row = {key: metrics[key] for key in COLUMNS if key in metrics}
        if not any(key in row for key in COLUMNS[2:]):
            return  # only Lightning's bookkeeping (epoch...): not a row of ours
        row["step"] = int(step if step is not None else metrics.get("step", 0))
        if not self._started:
            self._start(row["step"])
        with self._path.open("a", newline="") as f:
            csv.DictWriter(f, fieldnames=COLUMNS).writerow(row)

    def _start(self, first_step: int) -> None:
        self._started = True
        self._path.parent.mkdir(parents=True, exist_ok=True)
        kept = [r for r in read_metrics(self._path) if int(r["step"]) < first_step] if self._path.exists() else []
        with atomic_file(self._path, newline="") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(kept)


def read_metrics(path: str | os.PathLike) -> list[dict[str, str]]:
    """Rows of a metrics.csv as dicts of strings (empty string = not logged in that row)."""
    with Path(path).open(newline="") as f:
        return list(csv.DictReader(f))


def column(rows: list[dict[str, str]], key: str) -> list[tuple[int, float]]:
    """(step, value) pairs of the rows where ``key`` was logged."""
    return [(int(r["step"]), float(r[key])) for r in rows if r.get(key) not in (None, "")]


def plot_loss(run_dir: str | os.PathLike) -> Path | None:
    """Draw training and validation loss per optimizer step into ``RUN_DIR/loss.png`` (atomically).
    Returns the path, or None when there is nothing to plot yet."""
    run_dir = Path(run_dir)
    path = run_dir / METRICS_NAME
    if not path.exists():
        return None
    rows = read_metrics(path)
    train, val = column(rows, "loss"), column(rows, "val_loss")
    if not train and not val:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    if train:
        ax.plot(*zip(*[(s, v) for s, v in train if math.isfinite(v)]), lw=1, alpha=0.8, label="train loss")
    if val:
        ax.plot(*zip(*val), "o-", ms=3, lw=1.5, label="validation loss")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.set_title(run_dir.name)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out = run_dir / LOSS_PLOT_NAME
    with atomic_file(out, "wb") as f:
        fig.savefig(f, format="png")
    plt.close(fig)
    return out
