"""`slm bench`: training-step throughput of a model preset on random tokens.

A step is what training does: forward, loss, backward, AdamW step, zero grads. The first
`warmup` steps (allocator, autotuning, compilation) are not timed; then every step is timed
on its own (CUDA synchronised before and after). Reported: tokens/s (from the mean step
time), step time mean / p50 / p90, MFU (`model.flops.flops_per_token` and the peak table of
`pretrain.training.metrics`; None on CPU), peak memory (CUDA: `max_memory_allocated`; CPU: the
process's peak RSS), and the versions of everything that matters.

`compare_hf=True` also builds transformers' `LlamaForCausalLM` of the same shape (SDPA
attention, `model.hf.config_to_hf`) and times both through the same loop, alternating one step
of each, so that load on a shared machine hits both alike; `speedup_vs_hf` is ours / HF
tokens/s from the median step times (`speedup_vs_hf_mean` from the means).
"""

from __future__ import annotations

import logging
import platform
import statistics
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from pretrain.errors import PretrainError

log = logging.getLogger(__name__)

AC_MODES = ("none", "full", "selective")
DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


@dataclass(frozen=True)
class BenchSettings:
    model: str
    seq_len: int | None = None  # default: the preset's max_seq_len
    micro_batch_size: int = 1
    steps: int = 10
    warmup: int = 3
    attention: str = "auto"
    fused_ce: str = "auto"  # model.kernels.cross_entropy IMPLEMENTATIONS, or "none"
    fused_ops: str = "none"  # model.kernels.fused_ops FUSED_OPS
    compile: bool = False
    fp8: bool = False
    ac: str = "none"
    dtype: str | None = None  # default: bf16 on CUDA, fp32 on CPU
    device: str | None = None  # default: cuda if available
    threads: int | None = None
    seed: int = 0


def check_settings(s: BenchSettings) -> None:
    for name in ("micro_batch_size", "steps"):
        if getattr(s, name) < 1:
            raise PretrainError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(s, name)}")
    if s.warmup < 0:
        raise PretrainError(f"--warmup must be >= 0, got {s.warmup}")
    if s.seq_len is not None and s.seq_len < 2:
        raise PretrainError(f"--seq-len must be >= 2, got {s.seq_len}")
    if s.ac not in AC_MODES:
        raise PretrainError(f"--ac must be one of {', '.join(AC_MODES)}, got {s.ac!r}")
    if s.dtype is not None and s.dtype not in DTYPES:
        raise PretrainError(f"--dtype must be one of {', '.join(DTYPES)}, got {s.dtype!r}")
    if s.device is not None and s.device.split(":")[0] not in ("cpu", "cuda"):
        raise PretrainError(f"--device must be cpu or cuda, got {s.device!r}")
    if s.device and s.device.startswith("cuda") and not torch.cuda.is_available():
        raise PretrainError("--device cuda, but CUDA is not available here (--device)")
    if s.threads is not None and s.threads < 1:
        raise PretrainError(f"--threads must be >= 1, got {s.threads}")


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation between order statistics."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def versions() -> dict:
    """Python, torch (+ CUDA/cuDNN) and every optional package that changes speed, if installed."""
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version(), "torch": torch.__version__,
             "cuda": torch.version.cuda,
             "cudnn": torch.backends.cudnn.version() if torch.cuda.is_available() else None}
    for package in ("transformers", "flash-attn", "flash-attn-4", "xformers", "liger-kernel",
                    "torchao", "triton"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            pass
    return found


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    for line in open("/proc/cpuinfo", encoding="utf-8") if sys.platform == "linux" else ():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "cpu"


def peak_memory_gb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 1e9
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9  # Linux: KiB


class Trainer:
    """One model + AdamW + loss on one device: `step()` runs one timed training step."""

    def __init__(self, name: str, model: torch.nn.Module, loss_fn: Callable, vocab_size: int,
                 settings: BenchSettings, seq_len: int, device: torch.device, dtype: torch.dtype):
        from pretrain.training.optim import build_adamw

        self.name, self.model, self.loss_fn = name, model, loss_fn
        self.vocab_size, self.seq_len, self.device, self.dtype = vocab_size, seq_len, device, dtype
        self.batch_size = settings.micro_batch_size
        self.optimizer = build_adamw(model, lr=1e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
        self.generator = torch.Generator(device=device).manual_seed(settings.seed)
        self.step_times_s: list[float] = []
        self.losses: list[float] = []

    def step(self, timed: bool) -> None:
        tokens = torch.randint(0, self.vocab_size, (self.batch_size, self.seq_len + 1),
                               device=self.device, generator=self.generator)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        start = time.perf_counter()
        with torch.autocast(self.device.type, dtype=self.dtype,
                            enabled=self.dtype != torch.float32):
            loss = self.loss_fn(tokens[:, :-1], tokens[:, 1:])
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        if timed:
            self.step_times_s.append(time.perf_counter() - start)
            self.losses.append(loss.item())

    def report(self, flops_per_token: float, peak_flops: float | None) -> dict:
        from pretrain.training.metrics import mfu

        times = self.step_times_s
        tokens_per_step = self.batch_size * self.seq_len
        tokens_per_s = tokens_per_step / statistics.fmean(times)
        return {"tokens_per_step": tokens_per_step, "tokens_per_s": tokens_per_s,
                "tokens_per_s_p50": tokens_per_step / percentile(times, 50),
                "step_time_s": {"mean": statistics.fmean(times), "p50": percentile(times, 50),
                                "p90": percentile(times, 90), "min": min(times)},
                "mfu": mfu(tokens_per_s, flops_per_token, peak_flops),
                "final_loss": self.losses[-1]}


@contextmanager
def naming_the_option(flag: str):
    """A kernel choice this device cannot run (a `ModelError`) becomes a `PretrainError` that
    names the flag: `error: <what> (<flag>)`."""
    try:
        yield
    except ValueError as e:
        raise PretrainError(f"{e} ({flag})") from e


def build_ours(settings: BenchSettings, config, device: torch.device, dtype: torch.dtype):
    """Our Llama with the requested kernels, float8, activation checkpointing and compile."""
    from model import Llama
    from model.kernels import apply_fused_ops, linear_cross_entropy
    from model.kernels.attention_backends import check_backend
    from model.kernels.cross_entropy import resolve_implementation
    from model.kernels.fused_ops import resolve_fused_ops

    with naming_the_option("--attention"):
        check_backend(settings.attention, torch.empty(1, 1, config.n_heads, config.head_dim,
                                                      device=device, dtype=dtype, requires_grad=True))
    with naming_the_option("--fused-ce"):
        fused_ce = settings.fused_ce if settings.fused_ce == "none" else resolve_implementation(
            settings.fused_ce, device)
    with naming_the_option("--fused-ops"):
        ops = resolve_fused_ops(settings.fused_ops, device)
    if settings.fp8:
        from pretrain.training.float8 import check_float8_device, convert_to_float8

        check_float8_device(device, "--fp8")
    with torch.device(device):
        model = Llama(config)
    fused_ops = apply_fused_ops(model, ops).name
    if settings.fp8:
        convert_to_float8(model)
    if settings.ac != "none" or settings.compile:
        # pretrain.training.parallelize imports Lightning (slow to import): only when needed
        from pretrain.training.parallelize import apply_activation_checkpointing, apply_compile

        apply_activation_checkpointing(model, settings.ac)
        if settings.compile:
            apply_compile(model)

    if fused_ce == "none":
        def loss_fn(inputs, labels):
            return F.cross_entropy(model(inputs).flatten(0, 1).float(), labels.flatten())
    else:
        def loss_fn(inputs, labels):
            return linear_cross_entropy(model.forward_hidden(inputs), model.output.weight, labels,
                                        implementation=fused_ce)
    return model, loss_fn, {"fused_ce": fused_ce, "fused_ops": fused_ops}


def build_hf(settings: BenchSettings, config, device: torch.device):
    """transformers' LlamaForCausalLM of the same shape: SDPA attention, the same loss."""
    from model.hf import config_to_hf
    from model.kernels.optional import import_optional

    transformers = import_optional("transformers", "--compare hf")
    hf_config = transformers.LlamaConfig(**config_to_hf(config))
    hf_config._attn_implementation = "sdpa"
    with torch.device(device):
        model = transformers.LlamaForCausalLM(hf_config)
    if settings.ac != "none":
        from pretrain.training.parallelize import apply_activation_checkpointing

        apply_activation_checkpointing(model.model, settings.ac)  # LlamaModel has `.layers` too
    if settings.compile:
        for layer in model.model.layers:
            layer.compile()

    def loss_fn(inputs, labels):
        logits = model(input_ids=inputs, use_cache=False).logits
        return F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten())

    return model, loss_fn


def attention_backend_name(name: str, q: torch.Tensor) -> str:
    """The registered name `name` ("auto" included) resolves to for queries like `q`."""
    from model.attention import backend_names, select_backend

    chosen = select_backend(name, q)
    for candidate in backend_names():
        try:
            if select_backend(candidate, q) is chosen:
                return candidate
        except ValueError:
            continue
    return name


def run_bench(settings: BenchSettings, compare_hf: bool = False) -> dict:
    """Benchmark `settings` (and HF's LlamaForCausalLM with `compare_hf`); returns the report."""
    import model.kernels  # noqa: F401  (registers the fused attention backends)
    from model import LlamaConfig
    from model.flops import flops_per_token, param_count
    from pretrain.training.metrics import device_peak_flops

    check_settings(settings)
    if settings.threads:
        torch.set_num_threads(settings.threads)
    device = torch.device(settings.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = DTYPES[settings.dtype or ("bf16" if device.type == "cuda" else "fp32")]
    config = LlamaConfig.from_name(settings.model, attention_backend=settings.attention)
    seq_len = settings.seq_len or config.max_seq_len
    if seq_len > config.max_seq_len:
        config = config.replace(max_seq_len=seq_len)
    torch.manual_seed(settings.seed)

    ours, loss_fn, kernels = build_ours(settings, config, device, dtype)
    trainers = [Trainer("ours", ours, loss_fn, config.vocab_size, settings, seq_len, device, dtype)]
    if compare_hf:
        hf_model, hf_loss_fn = build_hf(settings, config, device)
        trainers.append(Trainer("hf", hf_model, hf_loss_fn, config.vocab_size, settings, seq_len,
                                device, dtype))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for index in range(settings.warmup + settings.steps):
        for trainer in trainers:  # alternate: drifting load on a shared machine hits both
            trainer.step(timed=index >= settings.warmup)
        log.debug("step %d done", index)

    fpt = flops_per_token(config, seq_len)
    peak = device_peak_flops(device)
    q_like = torch.empty(1, 1, config.n_heads, config.head_dim, device=device, dtype=dtype,
                         requires_grad=True)
    report = {
        **asdict(settings), "seq_len": seq_len, "dtype": str(dtype).removeprefix("torch."),
        "device": str(device), "device_name": device_name(device),
        "threads": torch.get_num_threads(),
        "attention": attention_backend_name(settings.attention, q_like), **kernels,
        "params": param_count(config), "flops_per_token": fpt,
        "peak_flops": peak, **trainers[0].report(fpt, peak),
        "peak_memory_gb": peak_memory_gb(device),
        # one process: with compare_hf the peak covers both models (ours is built first)
        "peak_memory_kind": "cuda_max_allocated" if device.type == "cuda" else "process_peak_rss",
        "peak_memory_includes_hf": compare_hf,
        "versions": versions(),
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if compare_hf:
        hf = trainers[1].report(fpt, peak)
        report["hf"] = hf
        # from medians: robust to load spikes on a shared machine (the mean ratio is also kept)
        report["speedup_vs_hf"] = report["tokens_per_s_p50"] / hf["tokens_per_s_p50"]
        report["speedup_vs_hf_mean"] = report["tokens_per_s"] / hf["tokens_per_s"]
    return report
