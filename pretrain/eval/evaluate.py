"""Evaluate a model on tasks: tokenise (as lm-eval), score (prefix-shared), compute metrics."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from pretrain.eval.items import Task
from pretrain.eval.metrics import item_outcome, outcome_stats, task_metrics
from pretrain.eval.requests import Request, item_requests
from pretrain.eval.scorer import score_groups

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreparedTask:
    """A task with each item's requests (one per choice), tokenised for one model's positions."""

    task: Task
    requests: tuple[tuple[Request, ...], ...]

    @property
    def truncated_items(self) -> int:
        return sum(any(r.truncated for r in group) for group in self.requests)


def prepare_task(task: Task, tokenizer, max_seq_len: int, bos: bool = False) -> PreparedTask:
    prepared = PreparedTask(task, tuple(tuple(item_requests(item, tokenizer, max_seq_len, bos, str(task.path)))
                                        for item in task.items))
    if prepared.truncated_items:
        log.warning("%s: %d of %d items are longer than the model's %d positions and were cut "
                    "from the left (as lm-eval does)", task.name, prepared.truncated_items,
                    len(task.items), max_seq_len)
    return prepared


def item_outcomes(prepared: PreparedTask, scores: list[list[tuple[float, bool]]],
                  positions: list[int]) -> list[dict]:
    """Outcome records of the items at ``positions`` given their scores."""
    out = []
    for position, item_scores in zip(positions, scores):
        requests = prepared.requests[position]
        out.append(item_outcome(prepared.task.items[position], item_scores, prepared.task.kind,
                                [r.n_bytes for r in requests], any(r.truncated for r in requests)))
    return out


def evaluate_prepared(model: torch.nn.Module, prepared: PreparedTask, batch_size: int = 32,
                      progress: bool = False) -> tuple[dict, list[dict]]:
    """(metrics, per-item outcomes in file order) of one task; the model is put in eval mode
    for the duration and given back in the mode it was in."""
    from tqdm import tqdm

    was_training = model.training
    model.eval()
    total = sum(len(g) for g in prepared.requests)
    try:
        with tqdm(total=total, desc=prepared.task.name, unit="req", disable=not progress,
                  leave=False) as bar:
            scores = score_groups(model, [list(g) for g in prepared.requests], batch_size, bar.update)
    finally:
        model.train(was_training)
    outcomes = item_outcomes(prepared, scores, list(range(len(scores))))
    return task_metrics(outcome_stats(outcomes), prepared.task.kind), outcomes


def evaluate(model: torch.nn.Module, tokenizer, tasks: list[Task], batch_size: int = 32,
             bos: bool = False, progress: bool = False) -> dict[str, tuple[dict, list[dict]]]:
    """{task name: (metrics, per-item outcomes)} of ``model`` (a ``model.Llama``)."""
    max_seq_len = model.config.max_seq_len
    return {task.name: evaluate_prepared(model, prepare_task(task, tokenizer, max_seq_len, bos),
                                         batch_size, progress)
            for task in tasks}
