"""`StepWatchdog`: a hung or dead rank leaves every other rank's stacks and ends the job.

With ``fault.step_timeout_s`` set, each rank arms ``faulthandler.dump_traceback_later``: if no
optimizer step finishes within the timeout, faulthandler's own C thread (it needs no GIL, so it
fires even while the main thread is stuck inside a collective or a CUDA sync) appends the
Python stacks of all the rank's threads to ``RUN_DIR/hang/rank{N}.txt`` and exits the process
with status 1, which ends the job under SLURM (``srun`` stops the other tasks) for a requeue.
A rank that is stopped (SIGSTOP) or dead cannot write its own file: it stays empty (or is
absent), and the other ranks' files show the collective they wait in.

What the timer counts. It arms when the first step of a fit has finished (that step includes
``torch.compile``, the data loader's start and, on resume, the checkpoint load, all of which
may take far longer), re-arms at the end of every step, and pauses from the start of a
validation or of a checkpoint write (``on_save_checkpoint``) to the next step's start: those
take as long as they take and are bounded by the collective timeout instead.

The collective timeout (the process group's ``timeout``) is set to ``2 × step_timeout_s``, at
least 5 minutes (`collective_timeout`; the same timeout bounds the ranks' rendezvous, which
waits for every process to start), so no rank waits for ever in a collective the watchdog does
not time; inside a step the watchdog, armed earlier and shorter, fires first and leaves the stacks.

An empty ``rank{N}.txt`` (nothing dumped) is removed when the fit ends; earlier dumps are kept
(the file is appended to), so a requeued job does not erase the evidence of the hang.
"""

from __future__ import annotations

import faulthandler
import logging
from datetime import timedelta
from pathlib import Path

from lightning.pytorch import Callback

log = logging.getLogger(__name__)

HANG_DIR = "hang"
MIN_COLLECTIVE_TIMEOUT_S = 300  # rendezvous: every rank's interpreter and imports must start


def collective_timeout(step_timeout_s: float) -> timedelta:
    """The process group's timeout for a step timeout (see the module docstring)."""
    return timedelta(seconds=max(2 * step_timeout_s, MIN_COLLECTIVE_TIMEOUT_S))


def set_collective_timeout(strategy, timeout: timedelta) -> None:
    """Give a distributed strategy's process group ``timeout`` (before ``trainer.fit`` creates the
    group). Lightning takes it only as a constructor argument, and the CLI builds the strategy
    from its name (``strategy: fsdp2``), so it is set on the built one; single-device strategies
    have no process group and nothing to set."""
    if hasattr(strategy, "_timeout"):
        strategy._timeout = timeout


def hang_file(run_dir: str | Path, rank: int) -> Path:
    return Path(run_dir) / HANG_DIR / f"rank{rank}.txt"


class StepWatchdog(Callback):
    """Dump stacks and exit with status 1 when no optimizer step finishes in ``timeout_s``."""

    def __init__(self, timeout_s: float):
        self.timeout_s = float(timeout_s)
        self._file = None
        self._armed = False
        self._paused = False

    # ---- timer ---------------------------------------------------------------------------
    def _arm(self, trainer) -> None:
        if self._file is None:
            path = hang_file(trainer.default_root_dir, trainer.global_rank)
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = path.open("a")
            if trainer.is_global_zero:
                log.info("fault.step_timeout_s: a step longer than %g s dumps every rank's stacks to "
                         "%s and exits with status 1", self.timeout_s, path.parent)
        faulthandler.dump_traceback_later(self.timeout_s, exit=True, file=self._file)
        self._armed, self._paused = True, False

    def _disarm(self, pause: bool) -> None:
        if self._armed:
            faulthandler.cancel_dump_traceback_later()
        self._armed, self._paused = False, pause and self._file is not None

    def _close(self) -> None:
        self._disarm(pause=False)
        if self._file is not None:
            self._file.close()
            path = Path(self._file.name)
            if path.exists() and path.stat().st_size == 0:
                path.unlink(missing_ok=True)
                try:  # the last rank out removes the empty directory (others may race it)
                    path.parent.rmdir()
                except OSError:
                    pass
            self._file = None

    # ---- Lightning hooks -----------------------------------------------------------------
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._paused:  # after a checkpoint write or validation: the next step is timed again
            self._arm(trainer)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._arm(trainer)  # a step finished: a fresh timeout for the next one

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        self._disarm(pause=True)

    def on_validation_start(self, trainer, pl_module) -> None:
        self._disarm(pause=True)

    def on_train_end(self, trainer, pl_module) -> None:
        self._close()

    def on_exception(self, trainer, pl_module, exception) -> None:
        self._close()

    def teardown(self, trainer, pl_module, stage) -> None:
        self._close()
