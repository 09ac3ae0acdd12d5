"""Exact resume: a run continued from its step-2 checkpoint logs the same losses as the run
that never stopped (same config, fresh process)."""

from tests.fixtures.pretrain import metrics_losses, tiny_config


def test_resume_from_a_checkpoint_reproduces_the_uninterrupted_losses(trained_run, pretrain_data,
                                                                     tmp_path, run_pretrain):
    straight = metrics_losses(trained_run)
    assert sorted(straight) == [1, 2, 3, 4]
    resumed_dir = tmp_path / "resumed"
    run_pretrain("--config", tiny_config(resumed_dir, pretrain_data),
                 "--ckpt_path", trained_run / "checkpoints" / "step-000002")
    resumed = metrics_losses(resumed_dir)
    assert sorted(resumed) == [3, 4]
    for step in (3, 4):
        assert abs(resumed[step] - straight[step]) <= 1e-6, (step, resumed[step], straight[step])
    val_straight, val_resumed = metrics_losses(trained_run, "val_loss"), metrics_losses(resumed_dir, "val_loss")
    assert abs(val_resumed[4] - val_straight[4]) <= 1e-6


def test_the_loss_falls_and_every_log_row_has_the_training_metrics(trained_run):
    from pretrain.training.run_logs import read_metrics

    rows = [r for r in read_metrics(trained_run / "metrics.csv") if r["loss"]]
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    assert [int(r["tokens_seen"]) for r in rows] == [256, 512, 768, 1024]
    for row in rows:
        assert float(row["lr"]) > 0 and float(row["grad_norm"]) > 0 and float(row["tokens_per_s"]) > 0
        assert row["mfu"] == ""  # no peak FLOP/s on CPU
    assert float(rows[-1]["loss"]) < float(rows[0]["loss"])
    assert (trained_run / "loss.png").stat().st_size > 1000
    assert (trained_run / "config.yaml").read_text().count("global_batch_tokens: 256") == 1
    assert any((trained_run / "tensorboard").glob("events.out.tfevents.*"))


def test_checkpoint_meta_records_position_shape_and_tokenizer(trained_run, trained_tokenizer):
    from pretrain.training.checkpoint.layout import read_checkpoint_meta

    meta = read_checkpoint_meta(trained_run / "checkpoints" / "step-000004")
    assert meta["step"] == 4 and meta["tokens_seen"] == 1024 and meta["samples_consumed"] == 32
    assert meta["model_config"]["vocab_size"] == 1024 and meta["model_config"]["dim"] == 64
    assert meta["format"] == "torch" and meta["world_size"] == 1
    assert meta["tokenizer_dir"] == str(trained_tokenizer)
    assert meta["config"]["data"]["global_batch_tokens"] == 256
    assert (trained_run / "checkpoints" / "last").resolve().name == "step-000004"


def test_validation_bits_per_byte_counts_the_bytes_of_the_validated_tokens(trained_run, pretrain_data,
                                                                          trained_tokenizer):
    import math

    import tokenizer
    from data import StreamingTokenDataset
    from pretrain.training.run_logs import read_metrics

    table = tokenizer.load(trained_tokenizer).token_bytes()
    validated = StreamingTokenDataset(pretrain_data, "val", seq_len=32, micro_batch_size=4, num_samples=8)
    labels = [int(t) for sample in validated for t in sample["labels"]]
    assert len(labels) == 8 * 32
    bytes_per_token = sum(table[t] for t in labels) / len(labels)
    rows = [r for r in read_metrics(trained_run / "metrics.csv") if r["val_loss"]]
    assert [int(r["step"]) for r in rows] == [2, 4]
    for row in rows:
        expected = float(row["val_loss"]) / math.log(2) / bytes_per_token
        assert abs(float(row["val_bpb"]) - expected) <= 1e-6 * expected
