"""`slm bench` on CPU: real training steps of a tiny model, a JSON report with every field,
the HF baseline through the same loop, and user mistakes as one `error:` line."""

import json
import subprocess
from pathlib import Path

import pytest

from pretrain.bench import percentile
from tests.user_errors import assert_user_error

TINY = ["--model", "debug-100k", "--seq-len", "32", "--micro-batch-size", "2", "--steps", "3",
        "--warmup", "1", "--threads", "2", "--device", "cpu"]
RECIPES = Path(__file__).parents[2] / "configs"


@pytest.fixture(scope="module")
def report():
    import sys

    proc = subprocess.run([sys.executable, "-m", "pretrain.cli", "bench", *TINY, "--compare", "hf",
                           "--json"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_bench_json_reports_throughput_time_memory_device_and_versions(report):
    assert report["model"] == "debug-100k" and report["device"] == "cpu"
    assert report["tokens_per_step"] == 2 * 32
    assert report["tokens_per_s"] > 0
    times = report["step_time_s"]
    assert 0 < times["min"] <= times["p50"] <= times["p90"]
    assert report["tokens_per_s"] == pytest.approx(64 / times["mean"])
    assert report["mfu"] is None  # no peak FLOP/s for a CPU
    assert report["flops_per_token"] > 0 and report["params"] > 0
    assert report["peak_memory_gb"] > 0 and report["peak_memory_kind"] == "process_peak_rss"
    assert report["device_name"] and report["threads"] == 2
    assert {"python", "torch", "transformers"} <= set(report["versions"])


def test_bench_resolves_auto_kernels_to_what_ran(report):
    assert report["attention"] == "sdpa"  # auto on CPU
    assert report["fused_ce"] == "chunked"  # auto on CPU
    assert report["fused_ops"] == "none"


def test_bench_trains_the_loss_stays_finite_and_near_uniform_on_random_tokens(report):
    # random tokens over a 512-token vocabulary: the loss stays near ln(512) = 6.24
    assert 5.5 < report["final_loss"] < 7.0
    assert 5.5 < report["hf"]["final_loss"] < 7.0


def test_compare_hf_reports_the_baseline_and_the_ratio(report):
    hf = report["hf"]
    assert hf["tokens_per_s"] > 0 and hf["tokens_per_step"] == 64
    assert report["speedup_vs_hf"] == pytest.approx(
        report["tokens_per_s_p50"] / hf["tokens_per_s_p50"])


def test_bench_text_output_names_tokens_per_s_and_mfu(capsys):
    proc = slm_in_process(capsys, "bench", *TINY, "--no-fused-ce", "--fused-ops", "torch",
                          "--ac", "full")
    assert proc.returncode == 0, proc.stderr
    assert "tokens/s" in proc.stdout and "MFU" in proc.stdout
    assert "fused CE eager" in proc.stdout and "fused ops torch" in proc.stdout
    assert "AC full" in proc.stdout


@pytest.mark.slow
def test_bench_compiles_blocks_with_selective_checkpointing_on_cpu(capsys):
    proc = slm_in_process(capsys, "bench", *TINY, "--compile", "--ac", "selective", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["compile"] is True and report["ac"] == "selective"
    assert 5.5 < report["final_loss"] < 7.0


@pytest.mark.parametrize("flags, fragments", [
    (["--ac", "sometimes"], ["--ac must be one of none, full, selective"]),
    (["--steps", "0"], ["--steps must be >= 1"]),
    (["--attention", "flash_attn"], ["pip install 'slm-pretrain[cuda]'", "(--attention)"]),
    (["--attention", "nope"], ["unknown attention backend 'nope'", "(--attention)"]),
    (["--fused-ce", "liger"], ["needs CUDA", "(--fused-ce)"]),
    (["--fused-ops", "liger"], ["need CUDA", "(--fused-ops)"]),
    (["--fp8"], ["float8 training needs an sm89+ GPU"]),
    (["--noise-scale"], ["--noise-scale needs --accumulation ≥ 2"]),
    (["--seq-len", "4096"], ["--seq-len 4096 exceeds the model's max_seq_len 256"]),
    (["--strategy", "ddp"], ["--strategy must be one of single, fsdp2"]),
])
def test_bench_user_mistakes_are_one_error_line(capsys, monkeypatch, flags, fragments):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)  # which would let liger run on a CPU
    assert_user_error(slm_in_process(capsys, "bench", *TINY, *flags), *fragments)


def test_unknown_model_is_a_user_error(capsys):
    assert_user_error(slm_in_process(capsys, "bench", "--model", "llama-7t"),
                      "unknown model preset 'llama-7t'")


def slm_in_process(capsys, *args) -> subprocess.CompletedProcess:
    """`slm ARGS` in this process (user errors are caught before any heavy work: no need to
    pay an interpreter start per case); returns what a subprocess run would."""
    from pretrain.cli import main

    capsys.readouterr()
    returncode = main(list(args))
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(list(args), returncode, captured.out, captured.err)


def test_percentile_interpolates_between_order_statistics():
    assert percentile([3.0, 1.0, 2.0, 4.0], 50) == 2.5
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 90) == pytest.approx(4.6)
    assert percentile([7.0], 90) == 7.0


@pytest.mark.gpu
def test_cuda_bench_reports_cuda_memory_and_mfu_where_the_peak_is_known(capsys):
    from pretrain.bench import BenchSettings, run_bench
    from pretrain.training.metrics import device_peak_flops

    report = run_bench(BenchSettings(model="debug-1m", seq_len=256, micro_batch_size=4, steps=3,
                                     warmup=2, device="cuda"), compare_hf=True)
    assert report["dtype"] == "bfloat16" and report["peak_memory_kind"] == "cuda_max_allocated"
    assert report["peak_memory_gb"] > 0
    assert (report["mfu"] is None) == (device_peak_flops("cuda") is None)
    assert report["attention"] != "eager"
    assert report["speedup_vs_hf"] > 0


def test_a_recipe_gives_the_model_kernels_and_batch_shape_of_its_training_step():
    from pathlib import Path

    from pretrain.commands.bench import recipe_settings

    settings = recipe_settings(Path(__file__).parents[2] / "configs" / "demo-cpu.yaml")
    assert settings == {"model": "debug-1m", "fused_ce": "auto",
                        "overrides": {"n_layers": 3, "vocab_size": 2048}, "seq_len": 256,
                        "micro_batch_size": 16, "strategy": "single", "dtype": "fp32"}


@pytest.mark.parametrize(("flags", "accumulation"), [([], 1), (["--accumulation", "3"], 3)])
def test_bench_from_a_recipe_steps_one_micro_batch_unless_accumulation_is_given(capsys, flags,
                                                                                accumulation):
    # demo-cpu.yaml accumulates 2 micro-batches per step on one device; bench does not copy that
    proc = slm_in_process(capsys, "bench", "--config", str(RECIPES / "demo-cpu.yaml"), "--micro-batch-size",
                          "2", "--seq-len", "32", "--steps", "1", "--warmup", "0", *flags, "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["accumulation"] == accumulation and report["tokens_per_step"] == accumulation * 2 * 32


def test_bench_runs_accumulated_steps_under_fsdp2_on_one_process(capsys):
    proc = slm_in_process(capsys, "bench", *TINY, "--accumulation", "2", "--strategy", "fsdp2",
                          "--noise-scale", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["strategy"] == "fsdp2" and report["tokens_per_step"] == 2 * 2 * 32
    assert 5.5 < report["final_loss"] < 7.0


def test_bench_times_the_training_step_on_the_model_training_builds(capsys, monkeypatch):
    import pretrain.training.parallelize as parallelize
    import pretrain.training.step as step

    calls = {"build": 0, "step": 0}
    build, train = parallelize.build_parallel_model, step.training_step

    def counting_build(*args, **kwargs):
        calls["build"] += 1
        return build(*args, **kwargs)

    def counting_step(*args, **kwargs):
        calls["step"] += 1
        return train(*args, **kwargs)

    monkeypatch.setattr(parallelize, "build_parallel_model", counting_build)
    monkeypatch.setattr(step, "training_step", counting_step)
    proc = slm_in_process(capsys, "bench", *TINY, "--json")
    assert proc.returncode == 0, proc.stderr
    assert calls == {"build": 1, "step": 1 + 3}  # warm-up + timed steps
