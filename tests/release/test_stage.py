"""Staging a release directory from checkpoints in each format pretraining writes."""

import pytest
import torch

from pretrain.release import ReleaseError, stage_release
from tests.release.conftest import write_checkpoint

REPO = "lab/tiny-llama"


def test_a_sharded_checkpoint_stages_to_the_same_logits(release_run, tmp_path):
    from transformers import AutoModelForCausalLM

    run_dir = tmp_path / "run"
    checkpoint = write_checkpoint(run_dir, release_run.model, step=8, tokens_seen=16_384,
                                  tokenizer_dir=release_run.tokenizer_dir, sharded=True)
    assert (checkpoint / "lightning.ckpt").is_dir()
    staged = stage_release(checkpoint, tmp_path / "out", repo_id=REPO)
    assert staged.revision == "step-000008-tokens-16K"
    hf_model = AutoModelForCausalLM.from_pretrained(staged.directory).eval()
    ids = torch.arange(20).unsqueeze(0)
    with torch.no_grad():
        assert torch.allclose(hf_model(ids).logits, release_run.model(ids), atol=1e-4)


def test_a_run_directory_releases_its_newest_checkpoint(release_run, tmp_path):
    staged = stage_release(release_run.run_dir, tmp_path / "out", repo_id=REPO)
    assert staged.revision == "step-000040-tokens-82K"


def test_a_checkpoint_without_a_tokenizer_is_refused(release_run, tmp_path):
    checkpoint = write_checkpoint(tmp_path / "run", release_run.model, step=2, tokens_seen=64,
                                  tokenizer_dir=None)
    with pytest.raises(ReleaseError, match="records no tokenizer; pass --tokenizer DIR"):
        stage_release(checkpoint, tmp_path / "out", repo_id=REPO)
    assert not (tmp_path / "out").exists()


def test_a_release_without_metrics_has_no_loss_curve(release_run, tmp_path):
    checkpoint = write_checkpoint(tmp_path / "run", release_run.model, step=2, tokens_seen=64,
                                  tokenizer_dir=None)
    staged = stage_release(checkpoint, tmp_path / "out", repo_id=REPO,
                           tokenizer_dir=release_run.tokenizer_dir)
    assert not (staged.directory / "loss.png").exists()
    assert "no loss curve" in (staged.directory / "README.md").read_text()
