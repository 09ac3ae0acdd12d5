"""What a run writes for humans: ``RUN_DIR/metrics.csv`` and ``RUN_DIR/loss.png``.

On a full disk these writers (and TensorBoard's, `TensorBoardRunLogger`) warn once and go on:
a lost log row must never end a multi-week run.

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

from lightning.pytorch.loggers import Logger, TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only

from tokenizer.atomic import atomic_file

log = logging.getLogger(__name__)

METRICS_NAME = "metrics.csv"
LOSS_PLOT_NAME = "loss.png"
# One row per log step (train columns filled) and one per validation (val_* filled).
COLUMNS = ("step", "tokens_seen", "loss", "ce", "kl", "val_loss", "val_ppl", "val_bpb", "lr", "grad_norm",
           "tokens_per_s", "mfu", "memory_allocated_gb", "memory_reserved_gb", "skipped_steps", "rewinds",
           "elapsed_s", "noise_scale_tokens", "noise_scale_sequences", "noise_grad_sq", "noise_trace")


class DiskErrorWarning:
    """A log writer's OSError (a full disk, a quota) is logged once and swallowed: losing log
    rows must never kill a training run (its checkpoints are what matter)."""

    def __init__(self, what: str):
        self.what = what
        self.warned = False

    def __call__(self, error: OSError) -> None:
        if not self.warned:
            self.warned = True
            log.warning("%s: a write failed (%s); training continues, the rows and plots not written "
                        "are lost (warned once)", self.what, error)


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
        self._first_step: int | None = None
        self._disk_error = DiskErrorWarning(str(self._path))

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
        if self._first_step is None:
            self._first_step = row["step"]
        try:
            if not self._started:
                self._start(self._first_step)
            with self._path.open("a", newline="") as f:
                csv.DictWriter(f, fieldnames=COLUMNS).writerow(row)
        except OSError as e:
            self._disk_error(e)

    def _start(self, first_step: int) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        kept = [r for r in read_metrics(self._path) if int(r["step"]) < first_step] if self._path.exists() else []
        with atomic_file(self._path, newline="") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(kept)
        self._started = True  # only now: a failed rewrite is tried again with the same first step


class TensorBoardRunLogger(TensorBoardLogger):
    """Lightning's TensorBoardLogger at ``RUN_DIR/tensorboard`` whose write errors warn once
    (`DiskErrorWarning`) instead of ending the run. TensorBoard writes from a thread and raises
    its error at the next write or flush, so every writing method is guarded."""

    def __init__(self, run_dir: str | os.PathLike):
        super().__init__(run_dir, name="tensorboard", version="")
        self._disk_error = DiskErrorWarning(str(Path(run_dir) / "tensorboard"))
        _quiet_tensorboard_writer_thread()

    def log_metrics(self, *args, **kwargs) -> None:
        self._guard(super().log_metrics, *args, **kwargs)

    def log_hyperparams(self, *args, **kwargs) -> None:
        self._guard(super().log_hyperparams, *args, **kwargs)

    def save(self) -> None:
        self._guard(super().save)

    def finalize(self, status: str) -> None:
        self._guard(super().finalize, status)

    def _guard(self, write, *args, **kwargs) -> None:
        try:
            write(*args, **kwargs)
        except (OSError, ValueError) as e:
            # Lightning re-raises a failed scalar write as ValueError("you tried to log ...")
            cause = e if isinstance(e, OSError) else e.__cause__
            if not isinstance(cause, OSError):
                raise
            self._disk_error(cause)


def _quiet_tensorboard_writer_thread() -> None:
    """TensorBoard's writer thread dies on an OSError and Python prints its traceback; the same
    error reaches the next write in the main thread, where `TensorBoardRunLogger` warns once.
    Drop that thread's traceback (only that: any other thread's error still prints)."""
    import threading

    if getattr(threading.excepthook, "_drops_tensorboard_disk_errors", False):
        return
    previous = threading.excepthook

    def hook(args):
        from_writer = type(args.thread).__module__.startswith("tensorboard.")
        if not (from_writer and issubclass(args.exc_type, OSError)):
            previous(args)

    hook._drops_tensorboard_disk_errors = True
    threading.excepthook = hook


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
    try:
        with atomic_file(out, "wb") as f:
            fig.savefig(f, format="png")
    except OSError as e:
        _plot_disk_error(e)
        return None
    finally:
        plt.close(fig)
    return out


_plot_disk_error = DiskErrorWarning(LOSS_PLOT_NAME)
