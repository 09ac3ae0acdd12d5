"""Checkpoints: where they live and what they hold (``layout``), and the Lightning callback that
writes them (``callback.PeriodicCheckpoint``)."""
