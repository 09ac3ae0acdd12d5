"""One ``slm eval`` session: tasks × the models ``--checkpoint`` names, with run-directory
bookkeeping (``eval.csv``, ``eval.png``, skipping checkpoints already evaluated)."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

import tokenizer as tok
from pretrain.errors import PretrainError
from pretrain.eval.bos import Bos, resolve_bos
from pretrain.eval.eval_csv import EVAL_CSV, is_evaluated, merge_rows, read_rows, result_rows, results_from_rows
from pretrain.eval.evaluate import evaluate_prepared, prepare_task
from pretrain.eval.items import Task
from pretrain.eval.plot import plot_eval
from pretrain.eval.targets import Target, is_run_dir, resolve_targets
from tokenizer.atomic import write_atomic

log = logging.getLogger(__name__)


@dataclass
class Evaluated:
    """One model's results: {task: metrics}, scored with ``bos``; ``skipped`` = read back from
    eval.csv."""

    target: Target
    results: dict[str, dict]
    bos: Bos
    skipped: bool = False
    wall_s: float = 0.0
    items_per_s: float | None = None


@dataclass
class Session:
    checkpoint: Path
    tasks: list[Task]
    batch_size: int = 32
    bos: bool | None = None  # None: as the tokenizer says (lm-eval's default)
    samples_dir: Path | None = None
    tokenizer_dir: Path | None = None
    device: str = "cpu"
    progress: bool = True
    evaluated: list[Evaluated] = field(default_factory=list)

    @property
    def run_dir(self) -> Path | None:
        return self.checkpoint if is_run_dir(self.checkpoint) else None

    def run(self) -> list[Evaluated]:
        """Evaluate every target in token order; on a run directory each checkpoint's rows go
        into eval.csv as soon as it is done (so an interrupted session resumes) and eval.png is
        redrawn at the end."""
        targets = resolve_targets(self.checkpoint, self.tokenizer_dir)
        csv_path = self.run_dir / EVAL_CSV if self.run_dir else None
        for target in targets:
            tokenizer = tok.load(target.tokenizer_dir)
            bos = resolve_bos(self.bos, target.tokenizer_dir, tokenizer.bos_id)
            rows = read_rows(csv_path) if csv_path else []
            if csv_path and all(is_evaluated(rows, target.step, t.name, len(t.items), bos.bos)
                                for t in self.tasks):
                log.info("%s: already in %s, skipped", target.name, csv_path)
                results = results_from_rows(rows, target.step, [t.name for t in self.tasks])
                self.evaluated.append(Evaluated(target, results, bos, skipped=True))
                continue
            done = self._evaluate(target, tokenizer, bos)
            self.evaluated.append(done)
            if csv_path:
                merge_rows(csv_path, result_rows(target.step, target.tokens, done.results,
                                                 target.name, done.wall_s, bos))
        if self.run_dir:
            plot_eval(self.run_dir)
        return self.evaluated

    def _evaluate(self, target: Target, tokenizer, bos: Bos) -> Evaluated:
        model = target.load().to(self.device)
        if tokenizer.vocab_size > model.config.vocab_size:
            raise PretrainError(f"tokenizer {target.tokenizer_dir} has {tokenizer.vocab_size} ids, "
                                f"the model only {model.config.vocab_size} (--tokenizer)")
        log.info("evaluating %s, BOS %s (%s)", target.path, "first" if bos.bos else "not added", bos.why)
        results, started, items = {}, time.perf_counter(), 0
        for task in self.tasks:
            prepared = prepare_task(task, tokenizer, model.config.max_seq_len, bos.bos)
            metrics, outcomes = evaluate_prepared(model, prepared, self.batch_size, self.progress)
            results[task.name] = metrics
            items += len(outcomes)
            if self.samples_dir is not None:
                self._write_samples(target, task.name, outcomes)
        wall = time.perf_counter() - started
        del model
        if self.device.startswith("cuda"):
            torch.cuda.empty_cache()
        return Evaluated(target, results, bos, wall_s=wall, items_per_s=items / max(wall, 1e-9))

    def _write_samples(self, target: Target, name: str, outcomes: list[dict]) -> None:
        directory = self.samples_dir / target.name if self.run_dir else self.samples_dir
        lines = "".join(json.dumps(o) + "\n" for o in outcomes)
        write_atomic(directory / f"{name}.jsonl", lines)
