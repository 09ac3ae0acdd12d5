"""The training core of ``slm pretrain``.

- ``plan``: the run plan, resolved once before any work from every config section.
- ``module``: the LightningModule; one ``training_step`` is one optimizer step.
- ``datamodule``: token shards → one rank's whole step of micro-batches per batch.
- ``parallelize`` (FSDP2, compile, activation checkpointing), ``float8``, ``optim``, ``schedule``.
- ``checkpoint``: the checkpoint layout and the callback that writes it.
- ``run_logs`` (metrics.csv, loss.png), ``metrics`` (MFU, memory), ``progress``, ``demo_data``.
"""
