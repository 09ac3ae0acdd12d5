"""`HubRelease` during real Lightning training: milestones are released in the background while
training goes on, failures are retried at the next milestone and never stop training."""

import logging
import threading
import time

import lightning as L
import pytest
import torch
import torch.nn.functional as F

from pretrain.training.checkpoint.callback import PeriodicCheckpoint
from pretrain.release import HubRelease, ReleaseError
from tests.release.conftest import TINY_MODEL
from tests.release.fake_hub import FakeHfApi
from tests.release.test_hub_publish import http_error

REPO = "lab/tiny-llama"
SEQ_LEN, BATCH = 16, 2
TOKENS_PER_STEP = SEQ_LEN * BATCH  # 32
MILESTONE_TOKENS = 4 * TOKENS_PER_STEP  # a milestone every 4 steps


class TinyPretrain(L.LightningModule):
    """The attributes PeriodicCheckpoint and HubRelease rely on (`model`, `model_config`,
    `tokens_seen`, `skipped_steps`) around a tiny real Llama; `step_sleep_s` slows each step."""

    def __init__(self, step_sleep_s: float = 0.0):
        super().__init__()
        from model import Llama, LlamaConfig

        self.model_config = LlamaConfig(**TINY_MODEL)
        self.model = Llama(self.model_config)
        self.tokens_seen = 0
        self.skipped_steps = 0
        self.step_sleep_s = step_sleep_s
        self.step_end_times: list[float] = []

    def training_step(self, batch, batch_idx):
        (tokens,) = batch
        logits = self.model(tokens[:, :-1])
        loss = F.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten())
        self.tokens_seen += tokens[:, :-1].numel()
        time.sleep(self.step_sleep_s)
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx):
        self.step_end_times.append(time.monotonic())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)

    def train_dataloader(self):
        data = torch.randint(0, TINY_MODEL["vocab_size"], (256, SEQ_LEN + 1),
                             generator=torch.Generator().manual_seed(0))
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(data), batch_size=BATCH)


def train(run_dir, release: HubRelease, steps: int, module=None) -> TinyPretrain:
    module = module or TinyPretrain()
    trainer = L.Trainer(
        max_steps=steps, default_root_dir=run_dir, accelerator="cpu", devices=1, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=[release, PeriodicCheckpoint(every_n_steps=1000, keep_last=1,
                                               milestone_every_tokens=MILESTONE_TOKENS)])
    trainer.fit(module)
    return module


def hub_release(api, tokenizer_dir, **kwargs) -> HubRelease:
    defaults = dict(every_n_tokens=MILESTONE_TOKENS, tokenizer_dir=str(tokenizer_dir),
                    attempts=1, backoff_s=0.0, checkpoint_wait_s=60, wait_on_end_s=120)
    return HubRelease(REPO, api_factory=lambda: api, **{**defaults, **kwargs})


def test_every_milestone_becomes_a_verified_revision_and_main_follows(tmp_path, trained_tokenizer):
    api = FakeHfApi()
    release = hub_release(api, trained_tokenizer, update_main=True)
    train(tmp_path, release, steps=12)
    revisions = ["step-000004-tokens-128", "step-000008-tokens-256", "step-000012-tokens-384"]
    assert [r.revision for r in release.released] == revisions
    assert set(api.repos[REPO].branches) == {"main", *revisions}
    for revision in revisions:
        assert [c.message for c in api.commits_on(REPO, revision)] == [
            f"Release {revision}", "initial commit"]
    assert api.branch_files(REPO, "main") == api.branch_files(REPO, revisions[-1])
    assert release.failed == []


def test_training_continues_while_an_upload_is_slow(tmp_path, trained_tokenizer):
    api = FakeHfApi()
    api.commit_delay_s = 2.0
    commit_window = []
    original = api.create_commit

    def timed_commit(*args, **kwargs):
        started = time.monotonic()
        try:
            return original(*args, **kwargs)
        finally:
            commit_window.append((started, time.monotonic()))
            api.commit_delay_s = 0.0  # only the first upload is slow: keeps the test short

    api.create_commit = timed_commit
    release = hub_release(api, trained_tokenizer)
    module = train(tmp_path, release, steps=40, module=TinyPretrain(step_sleep_s=0.1))
    start, end = commit_window[0]  # the first release's commit, 2 s long
    steps_during_upload = [t for t in module.step_end_times if start < t < end]
    assert len(steps_during_upload) >= 5
    assert len(release.released) == 10  # and every milestone still got released


def test_a_release_that_failed_is_retried_at_the_next_milestone(tmp_path, trained_tokenizer,
                                                                caplog):
    api = FakeHfApi()
    api.fail_next("create_commit", ConnectionError("network down"))
    release = hub_release(api, trained_tokenizer)
    with caplog.at_level(logging.INFO, logger="pretrain.release.callback"):
        train(tmp_path, release, steps=8)
    assert "Hub release of step-000004-tokens-128 failed" in caplog.text
    assert "retrying the Hub release of step-000004-tokens-128" in caplog.text
    # the retry came first, then the new milestone
    assert [r.revision for r in release.released] == ["step-000004-tokens-128",
                                                      "step-000008-tokens-256"]
    assert release.failed == []


def test_failures_at_the_end_get_one_more_try_when_training_ends(tmp_path, trained_tokenizer):
    api = FakeHfApi()
    api.fail_next("create_repo", ConnectionError("down"))  # the only milestone fails once
    release = hub_release(api, trained_tokenizer)
    train(tmp_path, release, steps=6)
    assert [r.revision for r in release.released] == ["step-000004-tokens-128"]


def test_a_hub_that_always_refuses_never_stops_training(tmp_path, trained_tokenizer, caplog):
    api = FakeHfApi()
    api.fail_next("create_repo", *[http_error(403) for _ in range(10)])
    release = hub_release(api, trained_tokenizer)
    with caplog.at_level(logging.ERROR, logger="pretrain.release.callback"):
        module = train(tmp_path, release, steps=8)
    assert module.tokens_seen == 8 * TOKENS_PER_STEP
    assert [m.name for m in release.failed] == ["step-000004-tokens-128", "step-000008-tokens-256"]
    assert "Hub releases failed: step-000004-tokens-128, step-000008-tokens-256" in caplog.text
    assert api.method_calls("create_commit") == []


def test_release_interval_must_be_a_multiple_of_the_milestone_interval(tmp_path, trained_tokenizer):
    release = hub_release(FakeHfApi(), trained_tokenizer, every_n_tokens=MILESTONE_TOKENS + 32)
    with pytest.raises(ReleaseError, match="must be a multiple of checkpoint.milestone_every_tokens"):
        train(tmp_path, release, steps=2)


def test_releases_default_to_every_milestone(tmp_path, trained_tokenizer):
    api = FakeHfApi()
    release = hub_release(api, trained_tokenizer, every_n_tokens=None)
    train(tmp_path, release, steps=4)
    assert [r.revision for r in release.released] == ["step-000004-tokens-128"]


def test_invalid_repo_is_refused_when_the_callback_is_built():
    with pytest.raises(ReleaseError, match="invalid repo name"):
        HubRelease("not a repo")


def test_the_worker_is_a_daemon_thread_that_ends_with_training(tmp_path, trained_tokenizer):
    release = hub_release(FakeHfApi(), trained_tokenizer)
    train(tmp_path, release, steps=4)
    assert not [t for t in threading.enumerate() if t.name == "hub-release"]
