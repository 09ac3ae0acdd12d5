"""Publishing a release directory to a (fake, in-memory) Hub: one branch, one commit, verified,
idempotent, retried. The fake sits at the `huggingface_hub.HfApi` boundary (tests/release/fake_hub.py)."""

import json
import os

import pytest

from pretrain.release.hub import ReleaseError, publish_release
from pretrain.release.retry import RetryPolicy
from tests.release.fake_hub import FakeHfApi

REPO = "lab/tiny-llama"
REV = "step-000040-tokens-82K"


def http_error(status: int):
    """A real huggingface_hub HTTP error carrying a response with `status` (built locally)."""
    from huggingface_hub.errors import HfHubHTTPError

    try:
        import httpx2 as httpx
    except ImportError:
        import httpx
    request = httpx.Request("POST", "https://hub.invalid/api/models/lab/tiny-llama/commit/x")
    return HfHubHTTPError(f"{status} error", response=httpx.Response(status, request=request),
                          server_message="server says no")


def write_release(directory, weights: bytes = b"\x01" * 4096, card: str = "---\nlicense: mit\n---\n"):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "model.safetensors").write_bytes(weights)
    (directory / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (directory / "tokenizer.model").write_bytes(os.urandom(512))
    (directory / "README.md").write_text(card)
    return directory


@pytest.fixture
def release_dir(tmp_path):
    return write_release(tmp_path / "release")


def publish(api, directory, revision=REV, sleeps=None, **kwargs):
    sleeps = [] if sleeps is None else sleeps
    return publish_release(api, directory, REPO, revision, sleep=sleeps.append,
                           retry=kwargs.pop("retry", RetryPolicy(attempts=3, backoff_s=1.0)), **kwargs)


def test_first_release_is_one_commit_on_a_branch_cut_from_the_initial_commit(release_dir):
    api = FakeHfApi()
    result = publish(api, release_dir)
    assert set(api.repos[REPO].branches) == {"main", REV}
    history = api.commits_on(REPO, REV)
    assert [c.message for c in history] == [f"Release {REV}", "initial commit"]
    assert len(api.method_calls("create_commit")) == 1
    assert sorted(api.method_calls("create_commit")[0]["paths"]) == sorted(
        ["README.md", "config.json", "model.safetensors", "tokenizer.model"])
    files = api.branch_files(REPO, REV)
    assert files["model.safetensors"] == (release_dir / "model.safetensors").read_bytes()
    assert set(files) == {".gitattributes", "README.md", "config.json", "model.safetensors",
                          "tokenizer.model"}
    assert set(api.branch_files(REPO, "main")) == {".gitattributes"}  # main untouched
    assert result.commit == history[0].oid and result.files == 4


def test_private_flag_creates_a_private_repo(release_dir):
    api = FakeHfApi()
    publish(api, release_dir, private=True)
    assert api.repos[REPO].private is True


def test_releasing_the_same_files_again_makes_no_commit(release_dir):
    api = FakeHfApi()
    publish(api, release_dir)
    again = publish(api, release_dir)
    assert again.commit is None
    assert len(api.method_calls("create_commit")) == 1
    assert len(api.commits_on(REPO, REV)) == 2


def test_verification_catches_a_corrupted_lfs_file(release_dir):
    api = FakeHfApi()
    api.corrupt_on_commit = {"model.safetensors"}
    with pytest.raises(ReleaseError, match=r"verification failed: .*model\.safetensors \(sha256"):
        publish(api, release_dir)


def test_verification_catches_a_corrupted_small_git_file(release_dir):
    api = FakeHfApi()
    api.corrupt_on_commit = {"config.json"}
    with pytest.raises(ReleaseError, match=r"verification failed: .*config\.json \(git blob"):
        publish(api, release_dir)


def test_existing_revision_with_different_content_is_refused_without_force(tmp_path, release_dir):
    api = FakeHfApi()
    publish(api, release_dir)
    changed = write_release(tmp_path / "changed", weights=b"\x02" * 4096)
    with pytest.raises(ReleaseError, match=rf"revision {REV} of {REPO} already exists with "
                                           r"different content: .*model\.safetensors.*--force"):
        publish(api, changed)
    assert len(api.method_calls("create_commit")) == 1
    assert api.branch_files(REPO, REV)["model.safetensors"] == b"\x01" * 4096


def test_force_replaces_changed_files_and_deletes_extra_ones_in_one_commit(tmp_path, release_dir):
    api = FakeHfApi()
    (release_dir / "stale.txt").write_text("old")
    publish(api, release_dir)
    changed = write_release(tmp_path / "changed", weights=b"\x02" * 4096)
    result = publish(api, changed, force=True)
    files = api.branch_files(REPO, REV)
    assert "stale.txt" not in files and files["model.safetensors"] == b"\x02" * 4096
    assert result.commit is not None and len(api.commits_on(REPO, REV)) == 3


def test_update_main_gives_main_the_latest_release_tree(tmp_path, release_dir):
    api = FakeHfApi()
    first = publish(api, release_dir, update_main=True)
    assert first.main_commit is not None
    assert api.branch_files(REPO, "main") == api.branch_files(REPO, REV)
    second_dir = write_release(tmp_path / "second", weights=b"\x03" * 4096, card="---\nb: 1\n---\n")
    publish(api, second_dir, revision="step-000080-tokens-164K", update_main=True)
    assert api.branch_files(REPO, "main") == api.branch_files(REPO, "step-000080-tokens-164K")
    assert api.branch_files(REPO, REV)["model.safetensors"] == b"\x01" * 4096  # old one intact
    again = publish(api, second_dir, revision="step-000080-tokens-164K", update_main=True)
    assert again.commit is None and again.main_commit is None


def test_new_branches_start_from_the_initial_commit_not_from_main(tmp_path, release_dir):
    api = FakeHfApi()
    (release_dir / "only-in-first.txt").write_text("x")
    publish(api, release_dir, update_main=True)
    publish(api, write_release(tmp_path / "second"), revision="step-000080-tokens-164K")
    assert "only-in-first.txt" not in api.branch_files(REPO, "step-000080-tokens-164K")


def test_placeholder_files_of_the_initial_commit_are_replaced_without_force(release_dir):
    api = FakeHfApi()
    api.seed_repo(REPO, {".gitattributes": b"*.bin filter=lfs\n", "README.md": b"# placeholder\n",
                         "LICENSE": b"MIT\n"})
    result = publish(api, release_dir)
    files = api.branch_files(REPO, REV)
    assert result.commit is not None
    assert files["README.md"] == (release_dir / "README.md").read_bytes()
    assert "LICENSE" not in files and ".gitattributes" in files
    assert api.branch_files(REPO, "main")["README.md"] == b"# placeholder\n"


def test_transient_errors_are_retried_with_exponential_backoff(release_dir):
    api = FakeHfApi()
    api.fail_next("create_commit", ConnectionError("reset by peer"), http_error(503))
    sleeps = []
    result = publish(api, release_dir, sleeps=sleeps)
    assert sleeps == [1.0, 2.0]
    assert result.commit is not None and len(api.commits_on(REPO, REV)) == 2


def test_a_commit_whose_reply_was_lost_is_not_made_twice(release_dir):
    api = FakeHfApi()
    api.fail_after_commit = [ConnectionError("reply lost")]
    result = publish(api, release_dir)
    assert result.commit is None  # the retry found the files already there
    assert len(api.commits_on(REPO, REV)) == 2


def test_a_branch_left_empty_by_an_interrupted_release_is_completed_without_force(release_dir):
    api = FakeHfApi()
    api.fail_next("create_commit", ConnectionError("down"), ConnectionError("down"),
                  ConnectionError("down"))
    with pytest.raises(ReleaseError, match="still failing after 3 attempts .*re-run to resume"):
        publish(api, release_dir)
    assert REV in api.repos[REPO].branches  # created, but holds no release files
    result = publish(api, release_dir)
    assert result.commit is not None


def test_a_refused_request_is_not_retried(release_dir):
    api = FakeHfApi()
    api.fail_next("create_repo", http_error(403))
    sleeps = []
    with pytest.raises(ReleaseError, match=r"the Hub refused \(HfHubHTTPError HTTP 403: server says no\)"):
        publish(api, release_dir, sleeps=sleeps)
    assert sleeps == [] and api.method_calls("create_commit") == []


def test_rate_limiting_is_retried(release_dir):
    api = FakeHfApi()
    api.fail_next("list_repo_tree", http_error(429))
    sleeps = []
    publish(api, release_dir, sleeps=sleeps)
    assert sleeps == [1.0]


def test_an_empty_release_directory_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReleaseError, match="nothing to release"):
        publish(FakeHfApi(), tmp_path / "empty")
