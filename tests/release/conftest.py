"""Fixtures for release tests: a run directory in the layout of `pretrain/training/checkpoint/layout.py` holding
a tiny real `model.Llama` checkpoint, its metrics.csv, and the shared trained tokenizer."""

from __future__ import annotations

import csv
import dataclasses
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

TINY_MODEL = dict(vocab_size=1024, dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=128,
                  max_seq_len=64, rope_theta=10000.0, norm_eps=1e-5, tie_embeddings=False)
RUN_CONFIG = {"model": {"preset": "llama-1m", "dim": 64, "lr": 0.001},
              "data": {"sources": [{"path": "prepared/demo", "weight": 1.0}]},
              "trainer": {"max_steps": 80}, "seed_everything": 1234}
CHECKPOINT_STEP, CHECKPOINT_TOKENS = 40, 81_920
STEPS_LOGGED = range(10, 81, 10)  # metrics.csv goes beyond the checkpoint: the plot must stop


def write_checkpoint(run_dir: Path, model, *, step: int, tokens_seen: int,
                     tokenizer_dir: Path | None, name: str | None = None,
                     sharded: bool = False) -> Path:
    """A complete checkpoint written with pretrain.training.checkpoint.layout's own layout calls: one file, or
    (`sharded`) a torch.distributed.checkpoint directory as FSDP2 runs write."""
    from pretrain.training.checkpoint import layout

    name = name or layout.milestone_name(step, tokens_seen)
    tmp = layout.begin_checkpoint(run_dir, name)
    state = {"model." + k: v.clone() for k, v in model.state_dict().items()}
    if sharded:
        import torch.distributed.checkpoint as dcp

        dcp.save({"state_dict": state}, checkpoint_id=tmp / layout.STATE_NAME, no_dist=True)
    else:
        torch.save({"state_dict": state}, tmp / layout.STATE_NAME)
    return layout.commit_checkpoint(tmp, {
        "step": step, "tokens_seen": tokens_seen, "samples_consumed": tokens_seen // 64,
        "model_config": dataclasses.asdict(model.config), "config": RUN_CONFIG,
        "tokenizer_dir": str(tokenizer_dir) if tokenizer_dir else None,
        "format": "dcp" if sharded else "torch",
        "world_size": 1,
    })


def write_metrics(run_dir: Path) -> Path:
    from pretrain.training.run_logs import COLUMNS, METRICS_NAME

    path = run_dir / METRICS_NAME
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        for step in STEPS_LOGGED:
            writer.writerow({"step": step, "tokens_seen": step * 2048, "loss": 7.0 - step / 20})
            if step % 40 == 0:
                writer.writerow({"step": step, "tokens_seen": step * 2048, "val_loss": 7.2 - step / 20})
    return path


@dataclass(frozen=True)
class ReleaseRun:
    run_dir: Path
    checkpoint: Path
    model: torch.nn.Module
    tokenizer_dir: Path


@pytest.fixture(scope="session")
def release_run(tmp_path_factory, trained_tokenizer) -> ReleaseRun:
    """A run dir with one milestone checkpoint (step 40, 81,920 tokens) of a tiny random Llama."""
    from model import Llama, LlamaConfig

    torch.manual_seed(0)
    model = Llama(LlamaConfig(**TINY_MODEL)).eval()
    run_dir = tmp_path_factory.mktemp("run")
    checkpoint = write_checkpoint(run_dir, model, step=CHECKPOINT_STEP,
                                  tokens_seen=CHECKPOINT_TOKENS, tokenizer_dir=trained_tokenizer)
    write_metrics(run_dir)
    return ReleaseRun(run_dir, checkpoint, model, Path(trained_tokenizer))
