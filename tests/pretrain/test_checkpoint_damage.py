"""Checkpoints that survive damage: meta.json lists every file with its size and CRC-32;
`--ckpt_path last` skips a damaged newest checkpoint (naming it and why) and resumes exactly from
the newest intact one; an explicitly named damaged checkpoint is one `error:` line."""

import json
import logging
import shutil

import pytest

from pretrain.training.checkpoint import layout
from tests.fixtures.pretrain import assert_same_losses, metrics_losses, tiny_config
from tests.pretrain.cli_in_process import slm_in_process
from tests.user_errors import assert_user_error


@pytest.fixture
def damaged_run(trained_run, tmp_path):
    """A copy of the 4-step run whose newest checkpoint (step 4) has a truncated state file."""
    run_dir = tmp_path / "run"
    shutil.copytree(trained_run, run_dir, symlinks=True)
    state = run_dir / "checkpoints" / "step-000004" / layout.STATE_NAME
    with state.open("r+b") as f:
        f.truncate(state.stat().st_size // 2)
    return run_dir


def test_meta_lists_every_file_with_its_size_and_crc32(trained_run):
    checkpoint = trained_run / "checkpoints" / "step-000004"
    meta = json.loads((checkpoint / layout.META_NAME).read_text())
    files = meta["files"]
    assert list(files) == [layout.STATE_NAME]
    assert files[layout.STATE_NAME]["bytes"] == (checkpoint / layout.STATE_NAME).stat().st_size
    assert len(files[layout.STATE_NAME]["crc32"]) == 8
    assert meta["plan"]["accumulation"] == 2 and meta["config"]["data"]["seq_len"] == 32
    assert layout.verify_checkpoint(checkpoint) is None


def test_a_flipped_byte_of_the_same_size_fails_the_crc(trained_run, tmp_path):
    checkpoint = tmp_path / "step-000002"
    shutil.copytree(trained_run / "checkpoints" / "step-000002", checkpoint)
    state = checkpoint / layout.STATE_NAME
    data = bytearray(state.read_bytes())
    data[len(data) // 2] ^= 0xFF
    state.write_bytes(bytes(data))
    assert layout.verify_checkpoint(checkpoint) == f"{layout.STATE_NAME} fails its CRC-32 check"


def test_last_skips_a_truncated_newest_checkpoint_and_resumes_exactly_from_the_one_before(
        damaged_run, trained_run, pretrain_data, capsys, caplog):
    caplog.set_level(logging.WARNING)
    config = tiny_config(damaged_run, pretrain_data, path=damaged_run.parent / "resume.yaml")
    (damaged_run / "metrics.csv").unlink()  # only the resumed run's rows
    proc = slm_in_process(capsys, "pretrain", "--config", config, "--ckpt_path", "last")
    assert proc.returncode == 0, proc.stderr
    skipped = [r.getMessage() for r in caplog.records if "skipping damaged checkpoint" in r.getMessage()]
    assert len(skipped) == 1 and "step-000004" in skipped[0]
    assert f"{layout.STATE_NAME} is " in skipped[0] and "were written" in skipped[0]
    assert_same_losses(metrics_losses(damaged_run), {s: v for s, v in metrics_losses(trained_run).items()
                                                     if s > 2}, [3, 4], tolerance=1e-6)
    assert layout.verify_checkpoint(damaged_run / "checkpoints" / "step-000004") is None  # re-saved


def test_an_explicit_damaged_checkpoint_is_one_error_line(damaged_run, pretrain_data, capsys):
    config = tiny_config(damaged_run, pretrain_data, path=damaged_run.parent / "resume.yaml")
    checkpoint = damaged_run / "checkpoints" / "step-000004"
    proc = slm_in_process(capsys, "pretrain", "--config", config, "--ckpt_path", checkpoint)
    assert_user_error(proc, "damaged checkpoint: lightning.ckpt is", str(checkpoint))


def test_a_checkpoint_of_an_older_format_is_named_as_such(trained_run, tmp_path):
    checkpoint = tmp_path / "step-000002"
    shutil.copytree(trained_run / "checkpoints" / "step-000002", checkpoint)
    meta = json.loads((checkpoint / layout.META_NAME).read_text())
    del meta["files"], meta["format_version"]
    (checkpoint / layout.META_NAME).write_text(json.dumps(meta))
    assert "written by an older slm-pretrain" in layout.verify_checkpoint(checkpoint)
