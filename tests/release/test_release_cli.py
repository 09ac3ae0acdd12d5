"""`slm release` as users run it: the dry-run directory is a loadable HF model with a model card;
mistakes are one `error:` line with exit 2 and nothing uploaded."""

import json

import pytest
import torch
import yaml

from tests.release.conftest import CHECKPOINT_STEP
from tests.pretrain.cli_in_process import slm_in_process
from tests.user_errors import assert_user_error

REPO = "lab/tiny-llama"
REV = "step-000040-tokens-82K"


@pytest.fixture(scope="module")
def dry_run(release_run, tmp_path_factory):
    """`slm release --dry-run DIR` of the fixture checkpoint (run once for the module)."""
    import subprocess
    import sys
    import os

    out = tmp_path_factory.mktemp("dry") / "release"
    proc = subprocess.run(
        [sys.executable, "-m", "pretrain.cli", "release", "--checkpoint", str(release_run.checkpoint),
         "--repo", REPO, "--dry-run", str(out), "--dataset", "cerebras/SlimPajama-627B"],
        capture_output=True, text=True, env={**os.environ, "HF_TOKEN": "", "HF_HOME": str(out.parent / "hf")},
        timeout=600)
    assert proc.returncode == 0, proc.stderr
    return out, proc


def test_dry_run_writes_the_release_and_uploads_nothing(dry_run):
    out, proc = dry_run
    assert f"dry run: release {REPO}@{REV} written to {out}" in proc.stdout
    assert "nothing uploaded" in proc.stdout
    assert {"model.safetensors", "config.json", "generation_config.json", "README.md", "loss.png",
            "tokenizer.model"} <= {p.name for p in out.iterdir()}


def test_dry_run_output_loads_with_transformers_and_matches_our_logits(dry_run, release_run):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out, _ = dry_run
    hf_model = AutoModelForCausalLM.from_pretrained(out).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    ids = torch.tensor([tokenizer("def f(x):\n\treturn x * 2  # double")["input_ids"][:32]])
    with torch.no_grad():
        theirs = hf_model(ids).logits
        ours = release_run.model(ids)
    assert theirs.shape == ours.shape
    assert torch.allclose(theirs, ours, atol=1e-4), (theirs - ours).abs().max()


def test_dry_run_model_card_has_yaml_front_matter_and_the_revision(dry_run):
    out, _ = dry_run
    card = (out / "README.md").read_text()
    meta = yaml.safe_load(card[4:card.index("\n---\n", 4)])
    assert meta["library_name"] == "transformers" and meta["license"] == "apache-2.0"
    assert meta["datasets"] == ["cerebras/SlimPajama-627B"]
    assert f'from_pretrained("{REPO}", revision="{REV}")' in card
    assert f"**{CHECKPOINT_STEP} optimizer steps**" in card
    assert (out / "loss.png").read_bytes()[:4] == b"\x89PNG"


def test_dry_run_generation_config_names_the_special_tokens(dry_run):
    out, _ = dry_run
    generation = json.loads((out / "generation_config.json").read_text())
    config = json.loads((out / "config.json").read_text())
    assert generation["eos_token_id"] == config["eos_token_id"]


def test_dry_run_needs_no_token(dry_run):
    _, proc = dry_run
    assert proc.stderr.count("error") == 0


def test_explicit_revision_name_is_used(capsys, release_run, tmp_path):
    proc = slm_in_process(capsys, "release", "--checkpoint", release_run.checkpoint, "--repo", REPO,
                          "--revision", "v0.1-early", "--dry-run", tmp_path / "r")
    assert proc.returncode == 0, proc.stderr
    assert 'revision="v0.1-early"' in (tmp_path / "r" / "README.md").read_text()


def test_missing_checkpoint_is_a_user_error(capsys, tmp_path):
    assert_user_error(slm_in_process(capsys, "release", "--checkpoint", tmp_path / "nope", "--repo", REPO),
                      "checkpoint not found", "nope")


def test_invalid_repo_name_is_a_user_error(slm, release_run):
    assert_user_error(slm("release", "--checkpoint", release_run.checkpoint, "--repo", "lab/bad name"),
                      "invalid repo name 'lab/bad name'", "--repo")


@pytest.mark.parametrize("repo", ["no-slash", "lab/x--y", "a/b/c", "lab/-x", "lab/"])
def test_repo_names_the_hub_rejects_are_refused_before_any_work(repo):
    from pretrain.release.stage import check_repo_id
    from pretrain.release.hub import ReleaseError

    with pytest.raises(ReleaseError, match="invalid repo name .*--repo"):
        check_repo_id(repo)


def test_invalid_revision_name_is_a_user_error(capsys, release_run):
    assert_user_error(slm_in_process(capsys, "release", "--checkpoint", release_run.checkpoint,
                                     "--repo", REPO, "--revision", "main"),
                      "invalid revision name", "--revision")


def test_no_token_is_a_user_error_and_nothing_is_written(slm, release_run, tmp_path):
    proc = slm("release", "--checkpoint", release_run.checkpoint, "--repo", REPO,
               env={"HF_TOKEN": "", "HF_HOME": str(tmp_path / "hf"), "TMPDIR": str(tmp_path)})
    assert_user_error(proc, "no Hugging Face token (set HF_TOKEN or run huggingface-cli login)")
    assert [p.name for p in tmp_path.iterdir()] == []  # no staging directory was even made


def test_dry_run_into_a_non_empty_directory_is_a_user_error(capsys, release_run, tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("x")
    assert_user_error(slm_in_process(capsys, "release", "--checkpoint", release_run.checkpoint,
                                     "--repo", REPO, "--dry-run", tmp_path / "full"),
                      "not empty", "full")
    assert [p.name for p in (tmp_path / "full").iterdir()] == ["keep.txt"]


@pytest.fixture
def fake_hub_client(monkeypatch):
    """`slm release` run in this process talks to an in-memory Hub (our own seam: the function
    that builds the client, not huggingface_hub's internals)."""
    from pretrain.release import release as release_module
    from tests.release.fake_hub import FakeHfApi

    api = FakeHfApi()
    monkeypatch.setattr(release_module, "hub_api", lambda: api)
    return api


def test_release_uploads_once_and_says_so_when_run_again(capsys, release_run, fake_hub_client):
    args = ("release", "--checkpoint", release_run.checkpoint, "--repo", REPO, "--update-main")
    first = slm_in_process(capsys, *args)
    assert first.returncode == 0, first.stderr
    assert f"released {REPO}@{REV}: commit " in first.stdout
    files = len(fake_hub_client.branch_files(REPO, REV)) - 1  # minus the Hub's .gitattributes
    assert f"verified: all {files} remote files match" in first.stdout
    assert "main now holds this release (commit" in first.stdout
    second = slm_in_process(capsys, *args)
    assert f"{REPO}@{REV} already holds these {files} files: no commit made" in second.stdout
    assert "main now holds this release (already did)" in second.stdout
    assert len(fake_hub_client.commits_on(REPO, REV)) == 2
    assert first.stderr == second.stderr == ""


def test_a_revision_with_other_content_is_refused_unless_forced(capsys, release_run, tmp_path,
                                                                  fake_hub_client):
    from tests.release.conftest import write_checkpoint

    other = write_checkpoint(tmp_path / "run", torch.nn.Module.eval(_perturbed(release_run.model)),
                             step=40, tokens_seen=81_920, tokenizer_dir=release_run.tokenizer_dir)
    slm_in_process(capsys, "release", "--checkpoint", release_run.checkpoint, "--repo", REPO)
    refused = slm_in_process(capsys, "release", "--checkpoint", other, "--repo", REPO)
    assert_user_error(refused, f"revision {REV} of {REPO} already exists with different content",
                      "model.safetensors", "--force")
    assert len(fake_hub_client.commits_on(REPO, REV)) == 2
    forced = slm_in_process(capsys, "release", "--checkpoint", other, "--repo", REPO, "--force")
    assert forced.returncode == 0, forced.stderr
    assert len(fake_hub_client.commits_on(REPO, REV)) == 3


def _perturbed(model):
    import copy

    other = copy.deepcopy(model)
    with torch.no_grad():
        other.norm.weight.add_(1.0)
    return other
