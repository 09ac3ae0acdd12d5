"""What ``slm eval --checkpoint PATH`` evaluates: one checkpoint, every complete checkpoint of a
run directory (in token order), or a Hugging Face model directory (our export or any Llama)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pretrain.errors import PretrainError
from pretrain.training.checkpoint.layout import (CHECKPOINTS_DIR, META_NAME, complete_checkpoints,
                                                 find_checkpoint_dir, read_checkpoint_meta)


@dataclass(frozen=True)
class Target:
    """One model: a training checkpoint (``step``/``tokens`` from its meta.json) or an HF dir."""

    path: Path
    is_hf: bool
    step: int | None
    tokens: int | None
    tokenizer_dir: Path

    @property
    def name(self) -> str:
        return self.path.name

    def load(self):
        """The model as a ``model.Llama`` in eval mode, float32, on the CPU."""
        if self.is_hf:
            from model.hf import load_pretrained

            return load_pretrained(self.path)
        from pretrain.export import load_model

        return load_model(self.path)


def is_run_dir(path: Path) -> bool:
    return path.is_dir() and (path / CHECKPOINTS_DIR).is_dir() and not (path / META_NAME).exists()


def resolve_targets(path: str | os.PathLike, tokenizer_dir: str | os.PathLike | None = None) -> list[Target]:
    """The models ``path`` names, oldest first. PretrainError when it is none of the three kinds,
    a run has no complete checkpoint, or no tokenizer is known (``--tokenizer``)."""
    path = Path(path)
    if path.is_dir() and (path / "config.json").is_file() and not (path / META_NAME).exists():
        tokenizer = Path(tokenizer_dir) if tokenizer_dir else path
        if not (tokenizer / "tokenizer.model").is_file():
            raise PretrainError(f"no tokenizer.model in {tokenizer}; pass --tokenizer DIR (--checkpoint)")
        return [Target(path, True, None, None, tokenizer)]
    if is_run_dir(path):
        found = complete_checkpoints(path)
        if not found:
            raise PretrainError(f"run directory has no complete checkpoint ({path})")
    else:
        found = [find_checkpoint_dir(path)]
    by_step: dict[int, Target] = {}
    for ckpt in found:
        meta = read_checkpoint_meta(ckpt)
        tokenizer = _checkpoint_tokenizer(ckpt, meta, tokenizer_dir)
        by_step.setdefault(meta["step"], Target(ckpt, False, meta["step"], meta["tokens_seen"], tokenizer))
    return sorted(by_step.values(), key=lambda t: (t.tokens, t.step))


def _checkpoint_tokenizer(ckpt: Path, meta: dict, tokenizer_dir) -> Path:
    if tokenizer_dir is not None:
        return Path(tokenizer_dir)
    recorded = meta.get("tokenizer_dir")
    if recorded and Path(recorded).exists():
        return Path(recorded)
    raise PretrainError(f"no tokenizer recorded with checkpoint {ckpt} (or it moved); pass --tokenizer DIR")
