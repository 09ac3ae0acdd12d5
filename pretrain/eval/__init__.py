"""Downstream evaluation: benchmark accuracy equal to lm-evaluation-harness's, from files on disk.

- ``items``: the item model and the generic JSONL format; ``benchmarks``: loaders for the
  standard benchmarks' public files (contexts and continuations as lm-eval's tasks);
- ``requests``: tokenisation as lm-eval's ``hf`` backend, BOS first or not as ``bos`` decides
  (``bos``: by default from the tokenizer's files, as lm-eval's default); ``scorer``: batched
  log-likelihoods with each item's shared prefix computed once; ``metrics``: acc, acc_norm,
  bpb, standard errors;
- ``evaluate``: a model on tasks; ``targets``/``session``: what ``slm eval --checkpoint``
  names (checkpoint, run directory, HF directory), with ``eval_csv`` and ``plot`` for runs;
- ``callback``: ``DownstreamEval``, the same evaluation inside the training loop.
"""

from pretrain.eval.callback import DownstreamEval

__all__ = ["DownstreamEval"]
