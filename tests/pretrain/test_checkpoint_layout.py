"""The checkpoint layout: names, completeness, `last`, retention (no training involved)."""

import json

import pytest

from pretrain.training.checkpoint import layout
from pretrain.errors import PretrainError


def _complete(run_dir, name, step=None):
    tmp = layout.begin_checkpoint(run_dir, name)
    (tmp / layout.STATE_NAME).write_bytes(b"state")
    return layout.commit_checkpoint(tmp, {"step": step or layout.checkpoint_step(name), "tokens_seen": 0})


def test_milestone_names_follow_tinyllama_releases():
    assert layout.milestone_name(480000, 480000 * 1024 * 2048) == "step-480000-tokens-1007B"
    assert layout.milestone_name(50, 52_428_800) == "step-000050-tokens-52M"
    assert layout.milestone_name(1430512, 3_000_000_000_000) == "step-1430512-tokens-3000B"
    assert layout.step_name(500) == "step-000500"


def test_latest_is_the_highest_complete_step_and_last_points_at_it(tmp_path):
    for name in ("step-000002", "step-000010", "step-000004-tokens-1K"):
        _complete(tmp_path, name)
    assert layout.latest_checkpoint(tmp_path).name == "step-000010"
    assert (tmp_path / "checkpoints" / "last").resolve() == layout.latest_checkpoint(tmp_path)


def test_half_written_and_metaless_directories_are_never_picked(tmp_path):
    _complete(tmp_path, "step-000002")
    half = layout.begin_checkpoint(tmp_path, "step-000004")  # killed while writing
    (half / layout.STATE_NAME).write_bytes(b"partial")
    (tmp_path / "checkpoints" / "step-000006").mkdir()  # renamed by hand, no meta.json
    assert layout.latest_checkpoint(tmp_path).name == "step-000002"
    assert [p.name for p in layout.complete_checkpoints(tmp_path)] == ["step-000002"]


def test_last_resolves_to_none_before_the_first_checkpoint(tmp_path):
    assert layout.resolve_ckpt_path("last", tmp_path) is None
    assert layout.resolve_ckpt_path(None, tmp_path) is None
    _complete(tmp_path, "step-000003")
    assert layout.resolve_ckpt_path("last", tmp_path) == layout.latest_checkpoint(tmp_path) / layout.STATE_NAME


def test_retention_keeps_the_newest_regular_ones_and_every_milestone(tmp_path):
    for step in range(1, 7):
        _complete(tmp_path, layout.step_name(step))
    _complete(tmp_path, "step-000002-tokens-2K")
    layout.apply_retention(tmp_path, keep_last=2)
    names = [p.name for p in layout.complete_checkpoints(tmp_path)]
    assert names == ["step-000002-tokens-2K", "step-000005", "step-000006"]


def test_meta_is_read_from_a_checkpoint_dir_its_state_file_or_a_run_dir(tmp_path):
    ckpt = _complete(tmp_path, "step-000007")
    for path in (ckpt, ckpt / layout.STATE_NAME, tmp_path):
        assert layout.read_checkpoint_meta(path)["step"] == 7
    assert json.loads((ckpt / layout.META_NAME).read_text())["tokens_seen"] == 0


def test_missing_or_incomplete_checkpoints_are_user_errors(tmp_path):
    with pytest.raises(PretrainError, match="checkpoint not found"):
        layout.read_checkpoint_meta(tmp_path / "nope")
    (tmp_path / "step-000001").mkdir()
    with pytest.raises(PretrainError, match="not a complete checkpoint"):
        layout.resolve_ckpt_path(str(tmp_path / "step-000001"), tmp_path)
