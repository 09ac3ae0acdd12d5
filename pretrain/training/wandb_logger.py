"""Weights & Biases beside the CSV and TensorBoard logs: the `wandb:` section of a recipe.

::

    wandb:
      project: tinyllama-1.1b    # W&B project (default: WANDB_PROJECT, else "slm-pretrain")
      entity: my-lab             # team or user (default: your W&B default)
      name: 1.1b-3T              # display name (default: the run directory's name)
      mode: online               # online | offline (RUN_DIR/wandb, `wandb sync` later) | disabled

The W&B run lives in ``RUN_DIR/wandb/``; its id is kept in ``RUN_DIR/wandb/run_id``, so a resumed
run (`--ckpt_path last`, a SLURM requeue) continues the same W&B run. Its config is the run's
resolved config and plan (``RUN_DIR/config.yaml``, ``RUN_DIR/plan.json``). Only rank 0 talks to
W&B (Lightning's WandbLogger); `wandb` is imported only when a mode other than disabled is asked for.
"""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml

from pretrain.errors import PretrainError
from pretrain.training.checkpoint.layout import CONFIG_NAME
from pretrain.training.plan import PLAN_NAME
from tokenizer.atomic import write_atomic

WANDB_DIR = "wandb"
RUN_ID_NAME = "run_id"


@dataclass
class WandbConfig:
    """Weights & Biases settings; see the module docstring for each key."""

    project: str | None = None
    entity: str | None = None
    name: str | None = None
    mode: Literal["online", "offline", "disabled"] = "disabled"


def run_id(run_dir: str | os.PathLike) -> str:
    """The W&B run id of a run directory: read from ``RUN_DIR/wandb/run_id``, made on first use."""
    path = Path(run_dir) / WANDB_DIR / RUN_ID_NAME
    if path.is_file():
        return path.read_text().strip()
    # W&B's own id shape: 8 characters of [a-z0-9].
    new_id = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, new_id + "\n")
    return path.read_text().strip()


def wandb_logger(config: WandbConfig | None, run_dir: str | os.PathLike):
    """Lightning's WandbLogger for ``config``, or None when it is absent or disabled;
    PretrainError naming the extra when the wandb package is missing."""
    if config is None or config.mode == "disabled":
        return None
    if config.mode not in ("online", "offline"):
        raise PretrainError(f"wandb.mode is online, offline or disabled, not {config.mode!r} (wandb.mode)")
    if importlib.util.find_spec("wandb") is None:
        raise PretrainError("W&B logging needs the wandb package: pip install 'slm-pretrain[wandb]' (wandb)")
    from lightning.pytorch.loggers import WandbLogger
    from lightning.pytorch.utilities import rank_zero_only

    class RunWandbLogger(WandbLogger):
        """WandbLogger whose config is the run's config.yaml and plan.json, finished at teardown
        (so an offline run's files are complete when the process ends)."""

        @rank_zero_only
        def log_hyperparams(self, params, *args, **kwargs) -> None:
            run = Path(run_dir)
            read = lambda path, parse: parse(path.read_text()) if path.is_file() else {}  # noqa: E731
            self.experiment.config.update({"config": read(run / CONFIG_NAME, yaml.safe_load),
                                           "plan": read(run / PLAN_NAME, json.loads)},
                                          allow_val_change=True)

        @rank_zero_only
        def finalize(self, status: str) -> None:
            super().finalize(status)
            if self._experiment is not None:
                self._experiment.finish(exit_code=0 if status == "success" else 1)

    run_dir = Path(run_dir)
    return RunWandbLogger(
        save_dir=str(run_dir), project=config.project or os.environ.get("WANDB_PROJECT", "slm-pretrain"),
        entity=config.entity, name=config.name or run_dir.name, mode=config.mode,
        id=run_id(run_dir) if rank_zero_only.rank == 0 else None)
