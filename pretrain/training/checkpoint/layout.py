"""The checkpoint layout: the one place that knows where checkpoints live and what they hold.

::

    RUN_DIR/checkpoints/
        step-000500/                      a complete checkpoint (renamed into place when done)
            lightning.ckpt                Lightning's state: a file (single device, DDP) or a
                                          torch.distributed.checkpoint directory (FSDP2: one
                                          shard file per rank + meta.pt), reshardable on load
            meta.json                     written last: step, tokens_seen, samples_consumed,
                                          model_config, config, tokenizer_dir, format, world_size
        step-480000-tokens-1007B/         a milestone (kept forever by the retention policy)
        .tmp-step-001000/                 a checkpoint being written: never listed, never loaded
        last -> step-000500               symlink to the newest complete checkpoint

A checkpoint is complete iff its directory has a final name and holds ``meta.json``. Writers
build it under a ``.tmp-`` name and ``os.rename`` it (atomic on POSIX), so a crash or SIGKILL at
any moment leaves either the previous set of complete checkpoints or the new one; readers
(:func:`latest_checkpoint`) look only at complete ones, never at ``last``'s target blindly.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path

from pretrain.errors import PretrainError

log = logging.getLogger(__name__)

CHECKPOINTS_DIR = "checkpoints"
STATE_NAME = "lightning.ckpt"
META_NAME = "meta.json"
LAST_LINK = "last"
TMP_PREFIX = ".tmp-"
_NAME = re.compile(r"^step-(\d+)(-tokens-[0-9.]+[KMBT]?)?$")


def checkpoints_dir(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / CHECKPOINTS_DIR


def format_tokens(tokens: int) -> str:
    """Compact token count as in TinyLlama's release names: 1007B, 52M, 3K, 999."""
    for unit, scale in (("T", 10**12), ("B", 10**9), ("M", 10**6), ("K", 10**3)):
        if tokens >= scale * (1 if unit != "T" else 10):  # "1007B" reads better than "1T"
            return f"{round(tokens / scale)}{unit}"
    return str(tokens)


def step_name(step: int) -> str:
    """Name of a regular checkpoint after ``step`` optimizer steps: ``step-000500``."""
    return f"step-{step:06d}"


def milestone_name(step: int, tokens_seen: int) -> str:
    """Name of a milestone checkpoint: ``milestone_name(480000, 1_006_632_960_000)`` →
    ``step-480000-tokens-1007B``. Also the Hub revision name used by releases."""
    return f"{step_name(step)}-tokens-{format_tokens(tokens_seen)}"


def is_milestone(path: str | os.PathLike) -> bool:
    match = _NAME.match(Path(path).name)
    return bool(match and match.group(2))


def checkpoint_step(path: str | os.PathLike) -> int | None:
    """The step encoded in a checkpoint directory's name, or None if it is not one."""
    match = _NAME.match(Path(path).name)
    return int(match.group(1)) if match else None


def is_complete(path: str | os.PathLike) -> bool:
    path = Path(path)
    return checkpoint_step(path) is not None and (path / META_NAME).is_file()


def complete_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoints of a run, oldest first (by step; a milestone sorts with its step)."""
    root = checkpoints_dir(run_dir)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and not p.is_symlink() and is_complete(p)]
    return sorted(found, key=lambda p: (checkpoint_step(p), is_milestone(p)))


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint directory of ``run_dir``, or None if there is none."""
    found = complete_checkpoints(run_dir)
    return found[-1] if found else None


def find_checkpoint_dir(path: str | os.PathLike) -> Path:
    """Accept a checkpoint directory, its ``lightning.ckpt``, or a run directory (→ its latest);
    return the complete checkpoint directory or raise PretrainError."""
    path = Path(path)
    if not path.exists():
        raise PretrainError(f"checkpoint not found: {path}")
    if path.name == STATE_NAME:
        path = path.parent
    if path.is_dir() and (path / CHECKPOINTS_DIR).is_dir() and not (path / META_NAME).exists():
        latest = latest_checkpoint(path)
        if latest is None:
            raise PretrainError(f"run directory has no complete checkpoint: {path}")
        return latest
    path = path.resolve()
    if not (path / META_NAME).is_file() or not (path / STATE_NAME).exists():
        raise PretrainError(f"not a complete checkpoint (no {META_NAME} or {STATE_NAME}): {path}")
    return path


def read_checkpoint_meta(path: str | os.PathLike) -> dict:
    """``meta.json`` of a checkpoint: ``step``, ``tokens_seen``, ``samples_consumed``,
    ``model_config`` (LlamaConfig as a dict), ``config`` (resolved run config), ``tokenizer_dir``
    (or None), ``format`` (``"torch"`` file or ``"dcp"`` sharded directory), ``world_size``."""
    ckpt = find_checkpoint_dir(path)
    try:
        return json.loads((ckpt / META_NAME).read_text())
    except json.JSONDecodeError as e:
        raise PretrainError(f"corrupt checkpoint metadata: {e} ({ckpt / META_NAME})") from None


def resolve_ckpt_path(ckpt_path: str | None, run_dir: str | os.PathLike) -> Path | None:
    """What ``--ckpt_path`` means: None → start fresh; ``last`` → the newest complete checkpoint
    of ``run_dir`` or None when there is none yet (so re-running the same command after a crash
    or a SLURM requeue resumes, and the first run starts fresh); anything else → that checkpoint.
    Returns the path of the Lightning state inside the checkpoint directory."""
    if ckpt_path is None:
        return None
    if ckpt_path == "last":
        latest = latest_checkpoint(run_dir)
        return None if latest is None else latest / STATE_NAME
    return find_checkpoint_dir(ckpt_path) / STATE_NAME


def write_json_atomic(path: Path, payload: dict) -> None:
    tmp = path.with_name(f"{TMP_PREFIX}{path.name}")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, path)


def begin_checkpoint(run_dir: str | os.PathLike, name: str) -> Path:
    """A fresh temporary directory for checkpoint ``name`` (a leftover one from a crash is removed)."""
    tmp = checkpoints_dir(run_dir) / f"{TMP_PREFIX}{name}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


def commit_checkpoint(tmp: Path, meta: dict) -> Path:
    """Write ``meta.json`` into ``tmp`` and rename it to its final name; repoint ``last`` at the
    newest complete checkpoint. One of the same name (a step re-saved after a resume) is replaced."""
    final = tmp.with_name(tmp.name[len(TMP_PREFIX):])
    write_json_atomic(tmp / META_NAME, meta)
    if final.exists():
        shutil.rmtree(final)
    os.rename(tmp, final)
    link = final.parent / LAST_LINK
    tmp_link = final.parent / f"{TMP_PREFIX}{LAST_LINK}"
    if tmp_link.is_symlink() or tmp_link.exists():
        tmp_link.unlink()
    os.symlink(latest_checkpoint(final.parent.parent).name, tmp_link)
    os.replace(tmp_link, link)
    return final


def apply_retention(run_dir: str | os.PathLike, keep_last: int) -> list[Path]:
    """Delete all but the newest ``keep_last`` regular checkpoints; milestones are always kept.
    Returns the deleted directories. ``keep_last <= 0`` keeps everything."""
    if keep_last <= 0:
        return []
    regular = [p for p in complete_checkpoints(run_dir) if not is_milestone(p)]
    doomed = regular[:-keep_last]
    for path in doomed:
        shutil.rmtree(path, ignore_errors=True)
        log.info("retention: removed checkpoint %s", path.name)
    return doomed
