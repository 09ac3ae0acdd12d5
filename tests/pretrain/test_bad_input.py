"""User mistakes in `slm pretrain`: one `error:` line, exit 2, nothing written, before any work."""

from tests.fixtures.pretrain import tiny_config
from tests.pretrain.cli_in_process import slm_in_process
from tests.user_errors import assert_user_error


def _nothing_written(run_dir):
    return not (run_dir / "checkpoints").exists() and not (run_dir / "config.yaml").exists()


def test_unknown_config_key_on_the_command_line(capsys, pretrain_data, tmp_path):
    config = tiny_config(tmp_path / "run", pretrain_data)
    proc = slm_in_process(capsys, "pretrain", "--config", config, "--model.dimm", "64")
    assert_user_error(proc, "--model.dimm", "slm pretrain")
    assert _nothing_written(tmp_path / "run")


def test_typo_in_a_yaml_section_name(slm, pretrain_data, tmp_path):  # a real process, end to end
    config = tiny_config(tmp_path / "run", pretrain_data)
    config.write_text(config.read_text().replace("checkpoint:", "checkpiont:"))
    assert_user_error(slm("pretrain", "--config", config), "checkpiont")


def test_wrong_value_type(capsys, pretrain_data, tmp_path):
    config = tiny_config(tmp_path / "run", pretrain_data)
    proc = slm_in_process(capsys, "pretrain", "--config", config, "--data.seq_len", "long")
    assert_user_error(proc, "data.seq_len")


def test_global_batch_not_divisible_by_micro_batch_and_sequence(capsys, pretrain_data, tmp_path):
    config = tiny_config(tmp_path / "run", pretrain_data)
    proc = slm_in_process(capsys, "pretrain", "--config", config, "--data.global_batch_tokens", "1000")
    assert_user_error(proc, "global_batch_tokens 1000 is not divisible by seq_len × micro_batch_size "
                            "× world_size = 32 × 4 × 1 = 128 (data.global_batch_tokens)")
    assert _nothing_written(tmp_path / "run")


def test_model_vocab_that_does_not_fit_the_data_tokenizer(capsys, pretrain_data, tmp_path):
    config = tiny_config(tmp_path / "run", pretrain_data, model={"vocab_size": 512})
    proc = slm_in_process(capsys, "pretrain", "--config", config)
    assert_user_error(proc, "model vocab_size 512 does not fit the data's tokenizer (vocab 1024",
                      "(model.vocab_size)")
    assert _nothing_written(tmp_path / "run")


def test_resuming_a_checkpoint_of_another_model_shape(capsys, trained_run, pretrain_data, tmp_path):
    config = tiny_config(tmp_path / "run", pretrain_data, model={"preset": "debug-1m", "vocab_size": 1024})
    proc = slm_in_process(capsys, "pretrain", "--config", config,
                          "--ckpt_path", trained_run / "checkpoints" / "step-000002")
    assert_user_error(proc, "checkpoint has another model shape", "dim=64 vs 128", "n_layers=2 vs 4")
    assert _nothing_written(tmp_path / "run")


def test_missing_checkpoint(capsys, pretrain_data, tmp_path):
    config = tiny_config(tmp_path / "run", pretrain_data)
    proc = slm_in_process(capsys, "pretrain", "--config", config, "--ckpt_path", tmp_path / "nowhere")
    assert_user_error(proc, "checkpoint not found")


def test_unknown_model_preset(capsys, pretrain_data, tmp_path):
    config = tiny_config(tmp_path / "run", pretrain_data, model={"preset": "llama-7t"})
    assert_user_error(slm_in_process(capsys, "pretrain", "--config", config), "llama-7t")


def test_kernels_this_device_cannot_run(capsys, pretrain_data, tmp_path, monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)  # which would let liger run on a CPU
    for key, message in [("fused_ops", "fused ops 'liger' need CUDA"),
                         ("fused_ce", "fused cross-entropy 'liger' needs CUDA")]:
        config = tiny_config(tmp_path / key, pretrain_data, model={key: "liger"})
        proc = slm_in_process(capsys, "pretrain", "--config", config)
        assert_user_error(proc, message, f"(model.{key})")
        assert _nothing_written(tmp_path / key)


def test_float8_off_an_sm89_gpu(capsys, pretrain_data, tmp_path):
    config = tiny_config(tmp_path / "run", pretrain_data, model={"float8": True})
    proc = slm_in_process(capsys, "pretrain", "--config", config)
    assert_user_error(proc, "float8 training needs an sm89+ GPU", "(model.float8)")
    assert _nothing_written(tmp_path / "run")
