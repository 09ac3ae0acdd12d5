"""`HubRelease`: publish milestone checkpoints to the Hub while training goes on.

In the pretraining YAML::

    trainer:
      callbacks:
        - class_path: pretrain.release.HubRelease
          init_args:
            repo: my-lab/tinyllama-1.1b
            every_n_tokens: 100_000_000_000   # a multiple of checkpoint.milestone_every_tokens
            update_main: true
    checkpoint:
      milestone_every_tokens: 100_000_000_000

At each token milestone the training loop only puts (step, tokens_seen) on a queue. A worker
thread on the first process waits for `PeriodicCheckpoint` to finish writing that milestone's
checkpoint (`checkpoints/step-…-tokens-…`, the same name), exports it, uploads it as the
revision of the same name with retries and backoff, and verifies it. Any failure is logged and
the release is tried again at the next milestone (oldest first) and once more at the end of
training, when the callback waits at most `wait_on_end_s` for the queue to drain. A release
that still failed can be finished later with `slm release` (it is idempotent).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from lightning.pytorch import Callback

from pretrain.release.card import CardMetadata
from pretrain.release.hub import ReleaseError, ReleaseResult
from pretrain.release.retry import RetryPolicy
from pretrain.release.stage import check_repo_id

logger = logging.getLogger(__name__)

_RETRY_FAILED = "retry-failed"  # queue marker: retry failed releases, release nothing new
_STOP = "stop"


@dataclass(frozen=True)
class Milestone:
    step: int
    tokens_seen: int
    name: str  # checkpoint directory name = Hub revision name


class HubRelease(Callback):
    """Release every `every_n_tokens` tokens (default: every checkpoint milestone) to `repo`.

    Args:
        repo: model repository `ORG/NAME` (created if missing, `private` if asked).
        every_n_tokens: release when tokens seen cross a multiple of this; must be a multiple of
            `checkpoint.milestone_every_tokens` so that a milestone checkpoint exists there.
        update_main: make `main` hold the newest release too.
        tokenizer_dir: tokenizer to ship (default: the one recorded in the checkpoint).
        license, datasets, languages, tags: model card metadata.
        attempts, backoff_s, max_backoff_s: retries of transient Hub errors within one try.
        checkpoint_wait_s: how long to wait for the milestone checkpoint to be complete.
        wait_on_end_s: how long training end waits for pending releases.
        api_factory: builds the Hub client (default: `huggingface_hub.HfApi` with the token from
            HF_TOKEN or the stored login; the token is never a setting of this callback).
    """

    def __init__(self, repo: str, every_n_tokens: int | None = None, private: bool = False,
                 update_main: bool = False, tokenizer_dir: str | None = None,
                 license: str = "apache-2.0", datasets: list[str] | None = None,
                 languages: list[str] | None = None, tags: list[str] | None = None,
                 attempts: int = 5, backoff_s: float = 30.0, max_backoff_s: float = 600.0,
                 checkpoint_wait_s: float = 1800.0, wait_on_end_s: float = 3600.0,
                 api_factory: Callable[[], Any] | None = None):
        self.repo = check_repo_id(repo)
        if every_n_tokens is not None and every_n_tokens <= 0:
            raise ReleaseError(f"every_n_tokens must be positive, got {every_n_tokens} (HubRelease)")
        self.every_n_tokens = every_n_tokens
        self.private, self.update_main, self.tokenizer_dir = private, update_main, tokenizer_dir
        self.card = CardMetadata(license=license, datasets=tuple(datasets or ()),
                                 languages=tuple(languages or ("en",)), tags=tuple(tags or ()))
        self.retry = RetryPolicy(attempts=attempts, backoff_s=backoff_s, max_backoff_s=max_backoff_s)
        self.checkpoint_wait_s, self.wait_on_end_s = checkpoint_wait_s, wait_on_end_s
        self.api_factory = api_factory
        self.released: list[ReleaseResult] = []  # filled by the worker, in order
        self.failed: list[Milestone] = []  # owned by the worker thread
        self._queue: queue.Queue = queue.Queue()
        self._worker: threading.Thread | None = None
        self._milestones_passed = 0
        self._run_dir: Path | None = None
        self._api = None

    # -- training-loop side: cheap, never blocks ---------------------------------------------
    def setup(self, trainer, pl_module, stage: str) -> None:
        if stage != "fit":
            return
        # Checked on every rank (one failing alone would leave the others waiting), before
        # training: a bad setting or a missing token surfaces now, not at the first milestone.
        self.every_n_tokens = self._check_milestones(trainer)
        api = self.api_factory() if self.api_factory else _default_api()
        if not trainer.is_global_zero:
            return
        self._api = api
        self._run_dir = Path(trainer.default_root_dir)
        self._worker = threading.Thread(target=self._work, name="hub-release", daemon=True)
        self._worker.start()

    def _check_milestones(self, trainer) -> int:
        from pretrain.training.checkpoint.callback import PeriodicCheckpoint

        found = [c for c in trainer.callbacks if isinstance(c, PeriodicCheckpoint)]
        milestone = found[0].milestone_every_tokens if found else None
        if not milestone:
            raise ReleaseError("HubRelease needs milestone checkpoints: set "
                               "checkpoint.milestone_every_tokens")
        every = self.every_n_tokens or milestone
        if every % milestone:
            raise ReleaseError(f"HubRelease.every_n_tokens ({every}) must be a multiple of "
                               f"checkpoint.milestone_every_tokens ({milestone})")
        return every

    def on_train_start(self, trainer, pl_module) -> None:
        if self.every_n_tokens:
            self._milestones_passed = pl_module.tokens_seen // self.every_n_tokens

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        """The end of an optimizer step (one training batch is one step)."""
        if self._worker is None:
            return
        passed = pl_module.tokens_seen // self.every_n_tokens
        if passed > self._milestones_passed:
            from pretrain.training.checkpoint.layout import milestone_name

            step, tokens = trainer.global_step, pl_module.tokens_seen
            self._queue.put(Milestone(step, tokens, milestone_name(step, tokens)))
            logger.info("queued Hub release of %s", milestone_name(step, tokens))
        self._milestones_passed = passed

    def on_train_end(self, trainer, pl_module) -> None:
        self._finish()

    def on_exception(self, trainer, pl_module, exception) -> None:
        self._finish(retry_failed=False)

    def _finish(self, retry_failed: bool = True) -> None:
        if self._worker is None:
            return
        if retry_failed:
            self._queue.put(_RETRY_FAILED)
        self._queue.put(_STOP)
        self._worker.join(timeout=self.wait_on_end_s)
        if self._worker.is_alive():
            logger.error("Hub releases still running after %.0f s; not waiting longer (finish "
                         "them with `slm release`)", self.wait_on_end_s)
        elif self.failed:
            logger.error("Hub releases failed: %s (finish them with `slm release --checkpoint "
                         "RUN_DIR/checkpoints/NAME --repo %s`)",
                         ", ".join(m.name for m in self.failed), self.repo)
        self._worker = None

    # -- worker side -----------------------------------------------------------------------
    def _work(self) -> None:
        while (item := self._queue.get()) != _STOP:
            retry, self.failed = self.failed, []
            for milestone in retry:
                logger.info("retrying the Hub release of %s", milestone.name)
                self._release(milestone)
            if isinstance(item, Milestone):
                self._release(item)

    def _release(self, milestone: Milestone) -> None:
        from pretrain.release.release import release_checkpoint

        try:
            checkpoint = self._wait_for_checkpoint(milestone)
            result = release_checkpoint(
                checkpoint, self.repo, api=self._api, revision=milestone.name,
                tokenizer_dir=self.tokenizer_dir, card=self.card, private=self.private,
                update_main=self.update_main, retry=self.retry, staging_dir=self._run_dir)
        except ReleaseError as e:
            logger.error("Hub release of %s failed: %s; retrying at the next milestone",
                         milestone.name, e)
            self.failed.append(milestone)
        except Exception:  # a bug must not stop training; it is logged with its traceback
            logger.exception("Hub release of %s failed; retrying at the next milestone",
                             milestone.name)
            self.failed.append(milestone)
        else:
            self.released.append(result)
            logger.info("released %s@%s (%s)", self.repo, milestone.name,
                        "no change" if result.commit is None else f"commit {result.commit[:12]}")

    def _wait_for_checkpoint(self, milestone: Milestone) -> Path:
        from pretrain.training.checkpoint.layout import checkpoints_dir, is_complete

        path = checkpoints_dir(self._run_dir) / milestone.name
        deadline = time.monotonic() + self.checkpoint_wait_s
        while not is_complete(path):
            if time.monotonic() > deadline:
                raise ReleaseError(f"milestone checkpoint not written within "
                                   f"{self.checkpoint_wait_s:.0f} s: {path}")
            time.sleep(0.2)
        return path


def _default_api():
    from pretrain.release.release import hub_api

    return hub_api()
