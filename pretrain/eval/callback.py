"""``DownstreamEval``: benchmark accuracy inside the training loop, every N optimizer steps and
at the end, without changing training.

    trainer:
      callbacks:
        - class_path: pretrain.eval.DownstreamEval
          init_args:
            tasks: {hellaswag: data/eval/hellaswag_val.jsonl, arc_easy: data/eval/ARC-Easy-Dev.jsonl}
            every_n_steps: 1000
            limit: 500            # first 500 items of each task

Items are split across data-parallel ranks (item i on rank i mod world size) and the metric
sums are added with ``trainer.strategy.reduce``; under FSDP2 every rank makes the same number
of forward calls (idle ones where it has fewer batches), as sharded forwards need. Metrics are
logged to the run's loggers as ``eval/NAME/{acc,acc_norm,bpb}`` and ``eval/wall_s`` at
``trainer.global_step`` (TensorBoard; metrics.csv keeps its fixed columns) and appended to
``RUN_DIR/eval.csv`` (the format ``slm eval`` writes on a run directory; source ``in-loop``),
with ``RUN_DIR/eval.png`` redrawn at the end. Contexts start with BOS as ``slm eval``'s do: as
the tokenizer's files say unless ``bos: true|false`` (recorded in eval.csv).

Training is unchanged: the model goes to eval mode and back, nothing is kept for autograd,
and the torch RNG states are restored afterwards. The callback holds no state of its own:
after a resume it evaluates at the next multiple of ``every_n_steps`` and replaces rows of
steps trained again.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback

from pretrain.errors import PretrainError
from pretrain.eval.benchmarks import load_task
from pretrain.eval.bos import Bos, resolve_bos
from pretrain.eval.eval_csv import EVAL_CSV, merge_rows, result_rows
from pretrain.eval.evaluate import PreparedTask, item_outcomes, prepare_task
from pretrain.eval.metrics import outcome_stats, task_metrics
from pretrain.eval.plot import plot_eval
from pretrain.eval.scorer import plan_batches, run_idle_batch, score_batch

log = logging.getLogger(__name__)

SOURCE = "in-loop"


class DownstreamEval(Callback):
    """Evaluate ``tasks`` ({NAME: FILE}, as ``slm eval --task NAME=FILE``) every
    ``every_n_steps`` optimizer steps (0 = only at the end) and when training ends (``at_end``).
    ``limit``: first N items per task; ``batch_size``: requests per forward; ``tokenizer``:
    default the one the training data was prepared with; ``bos``: True/False as ``slm eval
    --bos/--no-bos``, default None: what the tokenizer says (lm-eval's default, as ``slm eval``)."""

    def __init__(self, tasks: dict[str, str], every_n_steps: int = 0, limit: int | None = None,
                 batch_size: int = 16, tokenizer: str | None = None, bos: bool | None = None,
                 at_end: bool = True):
        if not tasks:
            raise PretrainError("DownstreamEval needs at least one task (trainer.callbacks: tasks)")
        if every_n_steps < 0 or batch_size < 1 or (limit is not None and limit < 1):
            raise PretrainError(f"DownstreamEval needs every_n_steps >= 0, batch_size >= 1 and "
                                f"limit >= 1, got {every_n_steps}, {batch_size}, {limit} (trainer.callbacks)")
        self.task_files = dict(tasks)
        self.every_n_steps, self.limit, self.batch_size = every_n_steps, limit, batch_size
        self.tokenizer, self.bos, self.at_end = tokenizer, bos, at_end
        self._tasks = None
        self._prepared: list[PreparedTask] | None = None
        self._tokenizer = None
        self._bos: Bos | None = None
        self._last_step: int | None = None

    # ---- hooks --------------------------------------------------------------------------
    def setup(self, trainer, pl_module, stage: str) -> None:
        # Read (and check) the task files and the tokenizer's BOS answer before any training,
        # so a bad one fails fast.
        import tokenizer as tok

        self._tasks = [load_task(name, file, self.limit) for name, file in self.task_files.items()]
        path = self.tokenizer or getattr(trainer.datamodule, "tokenizer_dir", None)
        if path is None:
            raise PretrainError("DownstreamEval needs a tokenizer: none is recorded with the "
                                "data; set tokenizer: DIR (trainer.callbacks)")
        self._tokenizer = tok.load(path)
        self._bos = resolve_bos(self.bos, path, self._tokenizer.bos_id)
        log.info("downstream eval: BOS %s (%s)", "first" if self._bos.bos else "not added", self._bos.why)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if self.every_n_steps and step > 0 and step % self.every_n_steps == 0:
            self.evaluate(trainer, pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        if self.at_end:
            self.evaluate(trainer, pl_module)
        if trainer.is_global_zero:
            plot_eval(trainer.default_root_dir)

    # ---- evaluation ---------------------------------------------------------------------
    def evaluate(self, trainer, pl_module) -> dict[str, dict] | None:
        """Evaluate at the current step (once per step); returns {task: metrics}."""
        step = trainer.global_step
        if step == self._last_step:
            return None
        self._last_step = step
        model = pl_module.model
        started = time.perf_counter()
        cpu_rng = torch.get_rng_state()
        cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
        was_training = model.training
        model.eval()
        try:
            results = {p.task.name: self._evaluate_task(trainer, pl_module, model, p)
                       for p in self._prepare(trainer, model)}
        finally:
            model.train(was_training)
            torch.set_rng_state(cpu_rng)
            if cuda_rng is not None:
                torch.cuda.set_rng_state_all(cuda_rng)
        wall = time.perf_counter() - started
        tokens = int(pl_module.tokens_seen)
        metrics = {f"eval/{name}/{key}": m[key] for name, m in results.items()
                   for key in ("acc", "acc_norm", "bpb") if m[key] is not None}
        metrics.update({"eval/wall_s": wall, "tokens_seen": tokens})
        for logger in pl_module.loggers:
            logger.log_metrics(metrics, step=step)
        if trainer.is_global_zero:
            merge_rows(Path(trainer.default_root_dir) / EVAL_CSV,
                       result_rows(step, tokens, results, SOURCE, wall, self._bos))
            summary = ", ".join(f"{name} acc {m['acc']:.4f}" for name, m in results.items())
            log.info("step %d: downstream eval in %.1f s: %s", step, wall, summary)
        return results

    def _prepare(self, trainer, model) -> list[PreparedTask]:
        if self._prepared is None:
            self._prepared = [prepare_task(task, self._tokenizer, model.config.max_seq_len, self._bos.bos)
                              for task in self._tasks]
        return self._prepared

    def _evaluate_task(self, trainer, pl_module, model, prepared: PreparedTask) -> dict:
        rank, world = trainer.global_rank, trainer.world_size
        positions = list(range(rank, len(prepared.requests), world))
        groups = [list(prepared.requests[p]) for p in positions]
        batches = plan_batches(groups, self.batch_size)
        n_batches = len(batches)
        if world > 1:
            # Sharded forwards are collective: every rank runs as many batches as the busiest,
            # agreed before any of them (idle ones where it has run out).
            counts = trainer.strategy.all_gather(torch.tensor(len(batches), device=pl_module.device))
            n_batches = int(counts.max())
        scores: list = [None] * len(groups)
        for batch in batches:
            for g, item_scores in zip(batch, score_batch(model, [groups[g] for g in batch],
                                                         uniform_calls=world > 1)):
                scores[g] = item_scores
        for _ in range(n_batches - len(batches)):
            run_idle_batch(model)
        stats = outcome_stats(item_outcomes(prepared, scores, positions))
        total = torch.tensor(stats, dtype=torch.float64, device=pl_module.device)
        if world > 1:
            total = trainer.strategy.reduce(total, reduce_op="sum")
        return task_metrics(total.tolist(), prepared.task.kind)
