"""Assemble a release directory from a checkpoint: the HF export (safetensors, config.json,
generation_config.json, tokenizer files) plus the model card `README.md` and `loss.png`."""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from pretrain.release.card import CardMetadata, plot_loss_curve, read_loss_history, render_model_card
from pretrain.release.hub import ReleaseError
from tokenizer.atomic import atomic_directory

logger = logging.getLogger(__name__)

# Git ref rules the Hub enforces, kept simple: a name segment of letters, digits, . _ -
_REVISION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")


def check_repo_id(repo_id: str) -> str:
    """`ORG/NAME` as the Hub accepts it, or ReleaseError naming --repo."""
    problem = None
    if repo_id.count("/") != 1:
        problem = "expected ORG/NAME"
    else:
        try:
            from huggingface_hub.utils import validate_repo_id
        except ImportError:
            validate_repo_id = None
        if validate_repo_id is not None:
            try:
                validate_repo_id(repo_id)
            except ValueError as e:
                problem = str(e).splitlines()[0].split(": '")[0].rstrip(".")
        elif not re.fullmatch(r"[\w.-]{1,96}/[\w.-]{1,96}", repo_id):
            problem = "use letters, digits, '-', '_', '.'"
    if problem:
        raise ReleaseError(f"invalid repo name {repo_id!r}: {problem} (--repo)")
    return repo_id


def check_revision(revision: str) -> str:
    if revision == "main" or not _REVISION.match(revision) or ".." in revision:
        raise ReleaseError(f"invalid revision name {revision!r}: use letters, digits, '.', '_', '-'"
                           f" and not 'main' (use --update-main) (--revision)")
    return revision


@dataclass(frozen=True)
class StagedRelease:
    """A release directory ready for upload, and what it holds."""

    directory: Path
    revision: str
    step: int
    tokens_seen: int


def _ensure_generation_config(export_dir: Path) -> None:
    """HF's `generate` reads bos/eos from generation_config.json; write one if the export
    did not (from config.json's token ids)."""
    path = export_dir / "generation_config.json"
    if path.exists():
        return
    config = json.loads((export_dir / "config.json").read_text())
    generation = {k: config[k] for k in ("bos_token_id", "eos_token_id", "pad_token_id")
                  if config.get(k) is not None}
    path.write_text(json.dumps({**generation, "_from_model_config": True}, indent=2) + "\n")


def _param_count(model_config: dict) -> int | None:
    from model import LlamaConfig
    from model.flops import param_count

    fields = LlamaConfig.__dataclass_fields__
    return param_count(LlamaConfig(**{k: v for k, v in model_config.items() if k in fields}))


def stage_release(checkpoint: str | os.PathLike, out_dir: str | os.PathLike, *, repo_id: str,
                  revision: str | None = None, tokenizer_dir: str | os.PathLike | None = None,
                  card: CardMetadata = CardMetadata()) -> StagedRelease:
    """Write the release of `checkpoint` (a checkpoint directory, sharded or not, or a run
    directory → its newest checkpoint) into `out_dir`, which must not exist or be empty.

    Revision defaults to `milestone_name(step, tokens_seen)`. The tokenizer is `tokenizer_dir`
    or the one recorded in the checkpoint; a release without one is refused (users could not
    load it). The loss curve covers metrics.csv rows up to this checkpoint's step. Written
    under a temporary name and renamed at the end: no half-written `out_dir` on error.
    """
    from pretrain.training.checkpoint.layout import (CHECKPOINTS_DIR, find_checkpoint_dir, milestone_name,
                                     read_checkpoint_meta)
    from pretrain.export import export_checkpoint
    from pretrain.training.run_logs import METRICS_NAME

    ckpt = find_checkpoint_dir(checkpoint)
    meta = read_checkpoint_meta(ckpt)
    step, tokens_seen = int(meta["step"]), int(meta["tokens_seen"])
    revision = check_revision(revision or milestone_name(step, tokens_seen))
    tokenizer_dir = tokenizer_dir or meta.get("tokenizer_dir")
    if tokenizer_dir is None:
        raise ReleaseError(f"the checkpoint records no tokenizer; pass --tokenizer DIR ({ckpt})")
    if not Path(tokenizer_dir).exists():
        raise ReleaseError(f"tokenizer not found: {tokenizer_dir} (--tokenizer or the "
                           f"checkpoint's tokenizer_dir)")
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ReleaseError(f"output directory exists and is not empty: {out_dir}")
    with atomic_directory(out_dir) as tmp:
        export_checkpoint(ckpt, tmp, tokenizer_dir=tokenizer_dir)
        _ensure_generation_config(tmp)
        metrics_csv = ckpt.parent.parent / METRICS_NAME
        points = []
        if ckpt.parent.name == CHECKPOINTS_DIR and metrics_csv.exists():
            points = read_loss_history(metrics_csv, max_step=step)
        if points:
            plot_loss_curve(points, tmp / "loss.png", title=f"{repo_id} @ {revision}")
        text = render_model_card(
            repo_id=repo_id, revision=revision, step=step, tokens_seen=tokens_seen,
            model_config=meta["model_config"], run_config=meta.get("config"),
            param_count=_param_count(meta["model_config"]), card=card,
            has_loss_plot=bool(points))
        (tmp / "README.md").write_text(text, encoding="utf-8")
    logger.info("staged %s (step %d, %d tokens) in %s", revision, step, tokens_seen, out_dir)
    return StagedRelease(out_dir, revision, step, tokens_seen)
