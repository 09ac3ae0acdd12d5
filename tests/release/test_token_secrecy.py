"""The Hugging Face token reaches the Hub client and nothing else: no file, log line, message or
model card of a release contains it."""

import logging

from pretrain.release import hub_api, release_checkpoint
from pretrain.release.retry import RetryPolicy
from tests.release.fake_hub import FakeHfApi
from tests.user_errors import assert_user_error

SENTINEL = "hf_SENTINELtokenDoNotLeak0123456789"
REPO = "lab/tiny-llama"


def files_containing(root, needle: bytes) -> list:
    return [p for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


def test_release_uses_the_token_but_writes_it_nowhere(release_run, tmp_path, monkeypatch,
                                                      caplog, capsys):
    monkeypatch.setenv("HF_TOKEN", SENTINEL)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    caplog.set_level(logging.DEBUG)
    api = hub_api(client_class=FakeHfApi)
    assert api.token == SENTINEL  # the client got it from HF_TOKEN
    api.fail_next("create_commit", ConnectionError("flaky"))  # a retry logs a warning too
    staging = tmp_path / "staging"
    staging.mkdir()
    release_checkpoint(release_run.checkpoint, REPO, api=api, staging_dir=staging,
                       update_main=True, retry=RetryPolicy(attempts=2, backoff_s=0.0))
    needle = SENTINEL.encode()
    uploaded = [path for repo in api.repos.values() for commit in repo.commits.values()
                for path, data in commit.files.items() if needle in data]
    assert uploaded == []
    assert files_containing(tmp_path, needle) == []
    assert files_containing(release_run.run_dir, needle) == []
    out, err = capsys.readouterr()
    assert SENTINEL not in caplog.text + out + err
    assert "retry" in caplog.text  # the log was really captured


def test_a_refused_upload_reports_without_the_token(slm, release_run, tmp_path):
    """A real `slm release` with a token that cannot be used (offline mode; the endpoint is a
    closed local port besides, so nothing could leave the machine)."""
    proc = slm("release", "--checkpoint", release_run.checkpoint, "--repo", REPO,
               env={"HF_TOKEN": SENTINEL, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"),
                    "HF_ENDPOINT": "http://127.0.0.1:9", "TMPDIR": str(tmp_path)})
    assert_user_error(proc, "offline mode")
    assert SENTINEL not in proc.stdout + proc.stderr
    assert files_containing(tmp_path, SENTINEL.encode()) == []
    assert [p.name for p in tmp_path.iterdir()] == []  # the staging directory was removed
