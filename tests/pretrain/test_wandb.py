"""`wandb: {mode: offline}` logs a run to RUN_DIR/wandb/ beside CSV and TensorBoard: its summary
holds the metrics.csv values, its config the run's config and plan, and a resumed run continues
the same W&B run id. Offline: no network, no login."""

import json
import os
from pathlib import Path

import pytest
import yaml

from pretrain.training.run_logs import column, read_metrics
from tests.fixtures.pretrain import tiny_config

pytestmark = pytest.mark.slow
wandb_internal_pb2 = pytest.importorskip("wandb.proto.wandb_internal_pb2")

_BLOCK = 32768  # the .wandb transaction log: LevelDB log blocks after a 7-byte file header


def wandb_records(path: Path):
    """The protobuf records of an offline run's ``run-ID.wandb`` file, in order."""
    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, chunks = 7, []
    while pos + 7 <= len(data):
        if _BLOCK - pos % _BLOCK < 7:  # a block's tail too short for a header is padding
            pos += _BLOCK - pos % _BLOCK
            continue
        length, kind = int.from_bytes(data[pos + 4:pos + 6], "little"), data[pos + 6]
        payload, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind == 0:
            continue
        chunks = [payload] if kind in (1, 2) else [*chunks, payload]  # FULL, FIRST | MIDDLE, LAST
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(b"".join(chunks))
            yield record


def offline_run(path: Path) -> dict:
    """run id, summary (all updates applied) and config of an offline run directory."""
    [log] = path.glob("run-*.wandb")
    run = {"summary": {}, "config": {}}
    for record in wandb_records(log):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run["id"] = record.run.run_id
        elif kind == "summary":
            for item in record.summary.update:
                run["summary"][item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
        elif kind == "config":
            for item in record.config.update:
                run["config"][item.key] = json.loads(item.value_json)
    return run


def _env(tmp_path):
    return {"OMP_NUM_THREADS": "1", "WANDB_CONFIG_DIR": str(tmp_path / "wandb-config"),
            "WANDB_CACHE_DIR": str(tmp_path / "wandb-cache"), "WANDB_DATA_DIR": str(tmp_path / "wandb-data")}


@pytest.fixture(scope="module")
def wandb_run(pretrain_data, tmp_path_factory):
    """A 4-step run with W&B offline, then resumed for 2 more steps."""
    from tests.fixtures.pretrain import _slm_pretrain

    tmp_path = tmp_path_factory.mktemp("wandb")
    run_dir = tmp_path / "run"
    config = tiny_config(run_dir, pretrain_data, wandb={"mode": "offline", "project": "slm-test"})
    _slm_pretrain("--config", config, env=_env(tmp_path))
    first = sorted((run_dir / "wandb").glob("offline-run-*"))
    _slm_pretrain("--config", config, "--ckpt_path", "last", "--trainer.max_steps", "6", env=_env(tmp_path))
    return run_dir, first


def test_the_offline_run_lives_in_the_run_directory_with_the_last_val_loss_as_its_summary(wandb_run):
    run_dir, [first] = wandb_run
    summary = offline_run(first)["summary"]
    val_losses = column(read_metrics(run_dir / "metrics.csv"), "val_loss")
    assert val_losses[1][0] == 4  # the first run's last validation
    assert summary["val_loss"] == pytest.approx(val_losses[1][1], abs=1e-9)
    assert summary["trainer/global_step"] == 4


def test_the_config_and_plan_are_the_wandb_config(wandb_run):
    run_dir, [first] = wandb_run
    latest = max((run_dir / "wandb").glob("offline-run-*"))  # the resumed run wrote the files last
    config = offline_run(latest)["config"]
    assert config["plan"] == json.loads((run_dir / "plan.json").read_text())
    assert config["plan"]["max_steps"] == 6
    assert config["config"] == yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["config"]["wandb"]["mode"] == "offline"


def test_a_resumed_run_continues_the_same_wandb_run_id(wandb_run):
    run_dir, [first] = wandb_run
    runs = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 2 and first in runs
    run_id = (run_dir / "wandb" / "run_id").read_text().strip()
    assert [offline_run(r)["id"] for r in runs] == [run_id, run_id]
    resumed = offline_run(next(r for r in runs if r != first))["summary"]
    assert resumed["val_loss"] == pytest.approx(column(read_metrics(run_dir / "metrics.csv"), "val_loss")[-1][1],
                                                abs=1e-9)
    assert resumed["trainer/global_step"] == 6


def test_a_missing_wandb_package_is_one_error_line_naming_the_extra(pretrain_data, tmp_path, slm):
    hide = tmp_path / "hide-wandb"
    hide.mkdir()
    # Imported at interpreter start-up: the process sees no wandb package (find_spec → None).
    (hide / "sitecustomize.py").write_text("import sys\nsys.modules['wandb'] = None\n")
    config = tiny_config(tmp_path / "run", pretrain_data, wandb={"mode": "offline"})
    proc = slm("pretrain", "--config", config,
               env={"PYTHONPATH": f"{hide}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", **_env(tmp_path)})
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: W&B logging needs the wandb package: pip install 'slm-pretrain[wandb]' (wandb)")
    assert not (tmp_path / "run" / "checkpoints").exists()
