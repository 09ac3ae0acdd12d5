"""The run plan: every number of a run derived once, before any work, from all config sections.

One optimizer step consumes ``global_batch_tokens`` = ``global_batch_samples × seq_len`` tokens:
each of ``world_size`` ranks runs ``accumulation`` micro-batches of ``micro_batch_size``
sequences. The run lasts ``max_steps`` steps, given directly (``trainer.max_steps``) or as
``max_tokens`` (rounded up to whole steps). Every rule that ties two sections together is
checked here, each failure one ``PretrainError`` line naming the key to change. The plan is
logged at start and saved as ``RUN_DIR/plan.json``; the objects of the run read their derived
values from it (or from the linked config keys), nothing is pushed into them afterwards.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

from pretrain.errors import PretrainError
from tokenizer.atomic import write_json_atomic

PLAN_NAME = "plan.json"


@dataclass(frozen=True)
class RunPlan:
    """What a run does, in steps, sequences and tokens (see the module docstring)."""

    seq_len: int
    max_seq_len: int
    micro_batch_size: int
    world_size: int
    accumulation: int
    global_batch_tokens: int
    document_masking: bool
    max_steps: int
    max_tokens: int | None  # as asked (None: the run length was given in steps)
    val_every_n_steps: int

    @property
    def global_batch_samples(self) -> int:
        return self.global_batch_tokens // self.seq_len

    @property
    def samples_per_rank_step(self) -> int:
        """Sequences one rank trains on per optimizer step (its micro-batches together)."""
        return self.micro_batch_size * self.accumulation

    @property
    def total_tokens(self) -> int:
        return self.max_steps * self.global_batch_tokens

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "global_batch_samples": self.global_batch_samples,
                "total_tokens": self.total_tokens}

    def describe(self) -> str:
        asked = "" if self.max_tokens is None else f" (max_tokens {self.max_tokens:,} rounded up to whole steps)"
        return "\n".join([
            f"plan: {self.max_steps:,} steps × {self.global_batch_tokens:,} tokens = "
            f"{self.total_tokens:,} tokens{asked}",
            f"  step = {self.global_batch_samples} sequences of {self.seq_len} tokens = micro-batch "
            f"{self.micro_batch_size} × {self.world_size} ranks × {self.accumulation} accumulation",
            f"  model positions {self.max_seq_len}; document masking "
            f"{'on' if self.document_masking else 'off'}; validation every {self.val_every_n_steps} steps",
        ])


def accumulation_for(global_batch_tokens: int, seq_len: int, micro_batch_size: int,
                     world_size: int) -> int:
    """Micro-batches per rank and step; PretrainError unless the batch divides exactly."""
    if min(global_batch_tokens, seq_len, micro_batch_size, world_size) < 1:
        raise PretrainError(f"global_batch_tokens, seq_len and micro_batch_size must be positive, got "
                            f"{global_batch_tokens}, {seq_len}, {micro_batch_size} (data)")
    per_micro_step = seq_len * micro_batch_size * world_size
    if global_batch_tokens % per_micro_step:
        raise PretrainError(
            f"global_batch_tokens {global_batch_tokens} is not divisible by seq_len × micro_batch_size × "
            f"world_size = {seq_len} × {micro_batch_size} × {world_size} = {per_micro_step} "
            f"(data.global_batch_tokens)")
    return global_batch_tokens // per_micro_step


def steps_for_tokens(max_tokens: int, global_batch_tokens: int) -> int:
    """Whole optimizer steps that train at least ``max_tokens`` tokens."""
    if max_tokens < 1:
        raise PretrainError(f"max_tokens must be positive, got {max_tokens} (max_tokens)")
    if global_batch_tokens < 1:
        raise PretrainError(f"global_batch_tokens must be positive, got {global_batch_tokens} "
                            f"(data.global_batch_tokens)")
    return math.ceil(max_tokens / global_batch_tokens)


def resolve_plan(*, seq_len: int, max_seq_len: int, micro_batch_size: int, world_size: int,
                 global_batch_tokens: int, document_masking: bool, data_has_document_ids: bool,
                 max_steps: int, max_tokens: int | None, val_every_n_steps: int) -> RunPlan:
    """Check every cross-section rule and derive the plan (``PretrainError`` on the first broken one)."""
    if seq_len > max_seq_len:
        raise PretrainError(f"data.seq_len {seq_len} exceeds the model's max_seq_len {max_seq_len}: "
                            f"set model.max_seq_len ≥ {seq_len} or data.seq_len ≤ {max_seq_len} (data.seq_len)")
    accumulation = accumulation_for(global_batch_tokens, seq_len, micro_batch_size, world_size)
    if max_steps is None or max_steps < 1:
        raise PretrainError(f"a pretraining run needs a length: set trainer.max_steps or max_tokens, "
                            f"got max_steps {max_steps} (trainer.max_steps)")
    if document_masking and not data_has_document_ids:
        raise PretrainError("model.document_masking is on but the data yields no document ids "
                            "(data.document_ids)")
    if val_every_n_steps < 1:
        raise PretrainError(f"val_every_n_steps must be ≥ 1, got {val_every_n_steps} (data.val_every_n_steps)")
    return RunPlan(seq_len=seq_len, max_seq_len=max_seq_len, micro_batch_size=micro_batch_size,
                   world_size=world_size, accumulation=accumulation,
                   global_batch_tokens=global_batch_tokens, document_masking=document_masking,
                   max_steps=max_steps, max_tokens=max_tokens, val_every_n_steps=val_every_n_steps)


def check_single_epoch(plan: RunPlan, sources: list[tuple[str, float, int]]) -> None:
    """``data.single_epoch``: PretrainError when the run needs more training samples of a source
    than one epoch holds. ``sources``: (path, share of the samples, samples per epoch) each."""
    samples = plan.max_steps * plan.global_batch_samples
    for path, share, per_epoch in sources:
        needed = math.ceil(samples * share)
        if needed > per_epoch:
            raise PretrainError(
                f"the run would repeat data: it needs {needed * plan.seq_len:,} training tokens "
                f"({needed:,} samples of {plan.seq_len}) but one epoch of {path} holds "
                f"{per_epoch * plan.seq_len:,} ({per_epoch:,} samples); lower trainer.max_steps "
                f"(≤ {per_epoch // max(1, math.ceil(plan.global_batch_samples * share)):,}) or "
                f"use more data (data.single_epoch)")


def save_plan(plan: RunPlan, run_dir: str | Path) -> Path:
    return write_json_atomic(Path(run_dir) / PLAN_NAME, plan.to_dict())
