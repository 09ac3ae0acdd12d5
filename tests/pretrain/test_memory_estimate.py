"""`slm bench --estimate-memory`: FakeTensorMode + FSDPMemTracker predict the peak memory per
rank of FSDP2 training without allocating it, and agree with the same tracker on a real run."""

import json

import pytest
import torch.distributed as dist

from pretrain.bench import BenchSettings
from pretrain.memory_estimate import estimate_memory, track_training_step
from tests.pretrain.cli_in_process import slm_in_process
from tests.user_errors import assert_user_error

SMALL = BenchSettings(model="debug-1m", seq_len=128, micro_batch_size=4, accumulation=2)


@pytest.mark.slow
def test_the_fake_estimate_is_within_10_percent_of_a_real_one_rank_runs_tracked_peak():
    """The comparison: ``FSDPMemTracker`` over the same two training steps with real tensors
    (bf16 FSDP2 policy, one gloo rank, AdamW states, 2 micro-batches), whose peak counts the
    bytes of every tensor actually alive; the estimate runs them on fake tensors instead."""
    predicted = estimate_memory(SMALL, devices=1)["predicted_peak_bytes"]
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        measured = track_training_step(SMALL, 1, fake=False)["peak_bytes"]
    finally:
        dist.destroy_process_group()
    assert measured > 1_000_000  # a real, non-trivial peak (debug-1m's states and activations)
    assert abs(predicted - measured) <= 0.10 * measured, (predicted, measured)


@pytest.mark.slow
def test_sharding_over_more_devices_lowers_the_predicted_parameter_and_optimizer_bytes():
    one, four = estimate_memory(SMALL, devices=1), estimate_memory(SMALL, devices=4)
    assert four["breakdown_bytes"]["OptState"] == pytest.approx(one["breakdown_bytes"]["OptState"] / 4, rel=0.05)
    assert four["predicted_peak_bytes"] < one["predicted_peak_bytes"]


def test_estimate_memory_json_reports_the_peak_and_its_breakdown(capsys):
    proc = slm_in_process(capsys, "bench", "--estimate-memory", "--model", "debug-1m", "--seq-len", "64",
                          "--micro-batch-size", "2", "--devices", "2", "--fused-ops", "liger", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["predicted_peak_bytes"] > 0
    assert report["predicted_peak_gib"] == pytest.approx(report["predicted_peak_bytes"] / 2 ** 30)
    assert (report["model"], report["devices"], report["micro_batch_size"], report["seq_len"]) == (
        "debug-1m", 2, 2, 64)
    assert {"Sharded Param", "OptState", "Activation"} <= set(report["breakdown_bytes"])
    assert report["fits"] == {"80GB": True, "40GB": True}
    assert "fused ops liger estimated as torch" in report["approximations"]


def test_estimate_memory_text_names_the_predicted_peak(capsys):
    proc = slm_in_process(capsys, "bench", "--estimate-memory", "--model", "debug-100k", "--seq-len", "32")
    assert proc.returncode == 0, proc.stderr
    assert "predicted peak memory per GPU" in proc.stdout and "OptState" in proc.stdout


@pytest.mark.slow
def test_the_estimate_allocates_no_real_memory_for_a_billion_parameter_model():
    """Fake tensors hold no storage: building the 1.1B's 4.4 GB of fp32 weights costs nothing."""
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    settings = BenchSettings(model="tinyllama-1.1b", seq_len=16, micro_batch_size=1)
    report = estimate_memory(settings, devices=8)
    grown_gb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024 / 1e9
    assert report["breakdown_bytes"]["Sharded Param"] == pytest.approx(1_100_048_384 * 4 / 8, rel=0.01)
    assert grown_gb < 1.0


@pytest.mark.parametrize("flags, fragments", [
    (["--model", "debug-100k", "--devices", "0"], ["--devices must be >= 1"]),
    (["--model", "debug-100k", "--fp8"], ["float8", "(--fp8)"]),
    (["--model", "debug-100k", "--steps", "3"], ["(--steps)"]),
    (["--model", "debug-100k", "--compare", "hf"], ["(--compare)"]),
    (["--model", "debug-100k", "--noise-scale", "--accumulation", "2"], ["(--noise-scale)"]),
    (["--micro-batch-size", "2"], ["give --model NAME or --config FILE.yaml"]),
])
def test_estimate_memory_user_mistakes_are_one_error_line(flags, fragments, capsys):
    proc = slm_in_process(capsys, "bench", "--estimate-memory", *flags)
    assert_user_error(proc, *fragments)


def test_devices_without_estimate_memory_is_a_user_error(capsys):
    proc = slm_in_process(capsys, "bench", "--model", "debug-100k", "--devices", "2")
    assert_user_error(proc, "--devices applies to --estimate-memory only")


def test_a_recipes_accumulation_is_taken_at_the_estimated_device_count(capsys):
    from pathlib import Path

    recipe = Path(__file__).resolve().parents[2] / "configs" / "demo-cpu.yaml"
    proc = slm_in_process(capsys, "bench", "--estimate-memory", "--config", recipe, "--seq-len", "32",
                          "--devices", "2", "--json")
    assert proc.returncode == 0, proc.stderr
    import yaml

    data = yaml.safe_load(recipe.read_text())["data"]
    expected = data["global_batch_tokens"] // (32 * data["micro_batch_size"] * 2)
    assert json.loads(proc.stdout)["accumulation"] == expected
