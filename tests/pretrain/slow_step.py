"""A callback for tests only: sleep at the start of one optimizer step (a hung step on demand)."""

import time

from lightning.pytorch import Callback


class SleepAtStep(Callback):
    """Sleep ``seconds`` at the start of optimizer step ``step`` (1-based)."""

    def __init__(self, step: int, seconds: float):
        self.step, self.seconds = step, seconds

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step + 1 == self.step:
            time.sleep(self.seconds)
