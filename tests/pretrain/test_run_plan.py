"""The run plan: every cross-section rule checked before any work, the plan logged and saved,
and the run length given in tokens as well as in steps."""

import json

from pretrain.training.plan import accumulation_for, resolve_plan, steps_for_tokens
from tests.fixtures.pretrain import metrics_losses, tiny_config
from tests.pretrain.cli_in_process import slm_in_process
from tests.user_errors import assert_user_error


def _nothing_written(run_dir):
    return not run_dir.exists() or not any(run_dir.iterdir())


def test_a_sequence_longer_than_the_model_positions_is_refused_before_any_work(capsys, pretrain_data, tmp_path):
    config = tiny_config(tmp_path / "run", pretrain_data, model={"max_seq_len": 512})
    proc = slm_in_process(capsys, "pretrain", "--config", config, "--data.seq_len", "1024",
                          "--data.global_batch_tokens", "4096")
    assert_user_error(proc, "data.seq_len 1024 exceeds the model's max_seq_len 512",
                      "set model.max_seq_len ≥ 1024 or data.seq_len ≤ 512 (data.seq_len)")
    assert _nothing_written(tmp_path / "run")


def test_document_masking_is_the_one_switch_that_makes_the_data_yield_document_ids(capsys, pretrain_data, tmp_path):
    config = tiny_config(tmp_path / "run", pretrain_data)
    proc = slm_in_process(capsys, "pretrain", "--config", config, "--data.document_ids", "true")
    assert_user_error(proc, "data.document_ids")  # a link target: set by model.document_masking


def test_document_masking_changes_the_losses_of_a_run(pretrain_data, tmp_path, run_pretrain, trained_run):
    masked = tmp_path / "masked"
    run_pretrain("--config", tiny_config(masked, pretrain_data, trainer={"max_steps": 2},
                                         model={"document_masking": True}))
    plan = json.loads((masked / "plan.json").read_text())
    assert plan["document_masking"] is True
    plain, with_masks = metrics_losses(trained_run), metrics_losses(masked)
    # the same weights and first batch: only the attention mask differs
    assert abs(with_masks[1] - plain[1]) > 1e-4


def test_the_plan_is_logged_and_saved_in_the_run_directory(trained_run):
    plan = json.loads((trained_run / "plan.json").read_text())
    assert plan == {"seq_len": 32, "max_seq_len": 256, "micro_batch_size": 4, "world_size": 1,
                    "accumulation": 2, "global_batch_tokens": 256, "global_batch_samples": 8,
                    "document_masking": False, "max_steps": 4, "max_tokens": None,
                    "total_tokens": 1024, "val_every_n_steps": 2}


def test_the_run_length_in_tokens_rounds_up_to_whole_steps(capsys, pretrain_data, tmp_path):
    run_dir = tmp_path / "run"
    config = tiny_config(run_dir, pretrain_data, trainer={"max_steps": -1})
    proc = slm_in_process(capsys, "pretrain", "--config", config, "--max_tokens", "700")
    assert proc.returncode == 0, proc.stderr
    plan = json.loads((run_dir / "plan.json").read_text())
    assert plan["max_tokens"] == 700 and plan["max_steps"] == 3 and plan["total_tokens"] == 768
    assert sorted(metrics_losses(run_dir)) == [1, 2, 3]


def test_max_tokens_and_max_steps_together_are_one_error(capsys, pretrain_data, tmp_path):
    config = tiny_config(tmp_path / "run", pretrain_data)
    proc = slm_in_process(capsys, "pretrain", "--config", config, "--max_tokens", "1000")
    assert_user_error(proc, "max_tokens 1000 or trainer.max_steps 4, not both", "(max_tokens)")
    assert _nothing_written(tmp_path / "run")


def test_accumulation_is_the_exact_quotient_of_the_global_batch():
    assert accumulation_for(2048 * 1024, 2048, 8, 32) == 4  # TinyLlama: 2M tokens, 32 GPUs
    assert steps_for_tokens(3 * 10**12, 2048 * 1024) == 1_430_512
    plan = resolve_plan(seq_len=2048, max_seq_len=2048, micro_batch_size=8, world_size=32,
                        global_batch_tokens=2048 * 1024, document_masking=False,
                        data_has_document_ids=False, max_steps=1_430_512, max_tokens=None,
                        val_every_n_steps=2000)
    assert plan.samples_per_rank_step == 32 and plan.global_batch_samples == 1024
    assert "1,430,512 steps × 2,097,152 tokens = 3,000,001,101,824 tokens" in plan.describe()
