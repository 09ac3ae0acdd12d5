"""Every recipe in configs/ parses as is, and the two big ones construct, shard with FSDP2 and
train 2 steps when shrunk on the command line (same keys, tiny dims, a tiny prepared dataset)."""

from pathlib import Path

import pytest

from tests.fixtures.pretrain import TINY_VOCAB, metrics_losses

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
SHRINK = ["--model.dim", "64", "--model.n_layers", "2", "--model.n_heads", "4", "--model.n_kv_heads", "2",
          "--model.ffn_dim", "128", "--model.vocab_size", str(TINY_VOCAB), "--model.warmup_steps", "1",
          "--data.seq_len", "32", "--data.global_batch_tokens", "256", "--data.micro_batch_size", "4",
          "--data.num_workers", "0", "--data.val_every_n_steps", "2", "--data.val_sequences", "8",
          "--trainer.accelerator", "cpu", "--trainer.devices", "1", "--trainer.max_steps", "2", "--trainer.log_every_n_steps", "1",
          "--trainer.enable_progress_bar", "false", "--checkpoint.every_n_steps", "2"]


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["tinyllama-1.1b.yaml", "litellama-460m.yaml"])
def test_big_recipe_shards_and_trains_two_steps_when_shrunk(recipe, pretrain_data, tmp_path, run_pretrain):
    run_dir = tmp_path / "run"
    data = ["--data.sources", f"[{{path: {pretrain_data}, weight: 0.7}}, {{path: {pretrain_data}, weight: 0.3}}]"]
    run_pretrain("--config", CONFIGS / recipe, *SHRINK, *data, "--trainer.default_root_dir", run_dir)
    assert sorted(metrics_losses(run_dir)) == [1, 2]
    from pretrain.training.checkpoint.layout import read_checkpoint_meta

    meta = read_checkpoint_meta(run_dir / "checkpoints" / "last")
    assert meta["format"] == "dcp"  # the recipe's fsdp2 strategy sharded it
    assert meta["config"]["model"]["lr"] in (4e-4, 6e-4) and meta["config"]["model"]["grad_clip"] == 1.0


@pytest.mark.filterwarnings("ignore:LightningCLI's args parameter")
@pytest.mark.parametrize("recipe", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_every_recipe_parses_and_its_batch_arithmetic_divides(recipe):
    """Parse with the real `slm pretrain` parser (types, unknown keys) without building anything."""
    from pretrain.commands.pretrain import _cli_class
    from pretrain.training.datamodule import PretrainDataModule
    from pretrain.training.plan import accumulation_for
    from pretrain.training.module import PretrainModule

    class ParseOnly(_cli_class()):
        def instantiate_classes(self):
            pass

    cli = ParseOnly(PretrainModule, PretrainDataModule, run=False, args=["--config", str(CONFIGS / recipe)],
                    save_config_callback=None, parser_kwargs={"exit_on_error": False})
    data, trainer = cli.config["data"], cli.config["trainer"]
    devices = 8 if trainer["accelerator"] == "gpu" else 1
    assert accumulation_for(data["global_batch_tokens"], data["seq_len"], data["micro_batch_size"], devices) >= 1
    assert trainer["max_steps"] > cli.config["model"]["warmup_steps"]
