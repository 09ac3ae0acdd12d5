"""A callback for tests only: sleep in one optimizer step, or in the validation after it."""

import time

from lightning.pytorch import Callback


class SleepAtStep(Callback):
    """Sleep ``seconds`` at the start of optimizer step ``step`` (1-based), or with
    ``in_validation`` at the end of the validation that follows that step."""

    def __init__(self, step: int, seconds: float, in_validation: bool = False):
        self.step, self.seconds, self.in_validation = step, seconds, in_validation

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if not self.in_validation and trainer.global_step + 1 == self.step:
            time.sleep(self.seconds)

    def on_validation_end(self, trainer, pl_module) -> None:
        if self.in_validation and trainer.global_step == self.step:
            time.sleep(self.seconds)
