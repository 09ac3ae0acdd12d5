"""`slm bench`: throughput of the very training step `slm pretrain` runs, on random tokens.

The model is built by `pretrain.training.parallelize.build_parallel_model` (the same kernels,
float8, activation checkpointing, compile, and FSDP2 with its mixed-precision policy on one
device when the strategy is `fsdp2`), and each step is `pretrain.training.step.training_step`:
forward and backward of every micro-batch through `causal_lm_loss`, clipping, AdamW. The first
`warmup` steps (allocator, autotuning, compilation) are not timed; then every step is timed on
its own (CUDA synchronised before and after). Reported: tokens/s (from the mean step time), step
time mean / p50 / p90, MFU (`model.flops.flops_per_token` and the peak table of
`pretrain.training.metrics`; None on CPU), peak memory (CUDA: `max_memory_allocated`; CPU: the
process's peak RSS), and the versions of everything that matters. `--config FILE.yaml` takes
the model, kernels and batch shape of a `slm pretrain` recipe.

`compare_hf=True` also builds transformers' `LlamaForCausalLM` of the same shape (SDPA
attention, `model.hf.config_to_hf`, the same strategy) and times both through the same step
function, alternating one step of each, so that load on a shared machine hits both alike;
`speedup_vs_hf` is ours / HF tokens/s from the median step times (`speedup_vs_hf_mean` from the
means).
"""

from __future__ import annotations

import logging
import platform
import statistics
import sys
import time
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

from pretrain.errors import PretrainError

log = logging.getLogger(__name__)

AC_MODES = ("none", "full", "selective")
DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


STRATEGIES = ("single", "fsdp2")


@dataclass(frozen=True)
class BenchSettings:
    model: str
    overrides: dict = field(default_factory=dict)  # LlamaConfig fields (a recipe's model section)
    seq_len: int | None = None  # default: the preset's max_seq_len
    micro_batch_size: int = 1
    accumulation: int = 1  # micro-batches per optimizer step
    steps: int = 10
    warmup: int = 3
    attention: str = "auto"
    fused_ce: str = "auto"  # model.kernels.cross_entropy IMPLEMENTATIONS
    fused_ops: str = "none"  # model.kernels.fused_ops FUSED_OPS
    compile: bool = False
    fp8: bool = False
    ac: str = "none"
    noise_scale: bool = False  # also measure the first micro-batch's gradient (needs accumulation ≥ 2)
    strategy: str | None = None  # default: fsdp2 on CUDA (as the GPU recipes), single on CPU
    dtype: str | None = None  # default: bf16 on CUDA, fp32 on CPU
    device: str | None = None  # default: cuda if available
    threads: int | None = None
    seed: int = 0


def check_settings(s: BenchSettings) -> None:
    for name in ("micro_batch_size", "accumulation", "steps"):
        if getattr(s, name) < 1:
            raise PretrainError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(s, name)}")
    if s.warmup < 0:
        raise PretrainError(f"--warmup must be >= 0, got {s.warmup}")
    if s.seq_len is not None and s.seq_len < 2:
        raise PretrainError(f"--seq-len must be >= 2, got {s.seq_len}")
    if s.ac not in AC_MODES:
        raise PretrainError(f"--ac must be one of {', '.join(AC_MODES)}, got {s.ac!r}")
    if s.strategy is not None and s.strategy not in STRATEGIES:
        raise PretrainError(f"--strategy must be one of {', '.join(STRATEGIES)}, got {s.strategy!r}")
    if s.dtype is not None and s.dtype not in DTYPES:
        raise PretrainError(f"--dtype must be one of {', '.join(DTYPES)}, got {s.dtype!r}")
    if s.device is not None and s.device.split(":")[0] not in ("cpu", "cuda"):
        raise PretrainError(f"--device must be cpu or cuda, got {s.device!r}")
    if s.device and s.device.startswith("cuda") and not torch.cuda.is_available():
        raise PretrainError("--device cuda, but CUDA is not available here (--device)")
    if s.noise_scale and s.accumulation < 2:
        raise PretrainError("--noise-scale needs --accumulation ≥ 2: the first micro-batch is the "
                            "small batch, the step the big one (--noise-scale)")
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


class StepTimer:
    """A model, its AdamW and its loss, stepped by ``training_step`` on random micro-batches."""

    def __init__(self, name: str, model: torch.nn.Module, loss_fn: Callable, vocab_size: int,
                 settings: BenchSettings, seq_len: int, device: torch.device, autocast: torch.dtype | None):
        from pretrain.training.optim import build_adamw

        self.name, self.model, self.loss_fn = name, model, loss_fn
        self.vocab_size, self.seq_len, self.device, self.autocast = vocab_size, seq_len, device, autocast
        self.batch_size, self.accumulation = settings.micro_batch_size, settings.accumulation
        self.noise_scale = settings.noise_scale
        self.optimizer = build_adamw(model, lr=1e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
        self.generator = torch.Generator(device=device).manual_seed(settings.seed)
        self.step_times_s: list[float] = []
        self.losses: list[float] = []

    def _micro_batch(self) -> dict[str, torch.Tensor]:
        tokens = torch.randint(0, self.vocab_size, (self.batch_size, self.seq_len + 1),
                               device=self.device, generator=self.generator)
        return {"input_ids": tokens[:, :-1], "labels": tokens[:, 1:]}

    def step(self, timed: bool) -> None:
        from pretrain.training.step import training_step

        batches = [self._micro_batch() for _ in range(self.accumulation)]
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        start = time.perf_counter()
        # Single device with bf16: autocast, as Lightning's `bf16-mixed` precision does in training.
        with torch.autocast(self.device.type, dtype=self.autocast or torch.float32,
                            enabled=self.autocast is not None):
            result = training_step(self.model, self.optimizer, batches, self.loss_fn, grad_clip=1.0,
                                   measure_first_micro_batch=self.noise_scale)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        if timed:
            self.step_times_s.append(time.perf_counter() - start)
            self.losses.append(result.loss.item())

    def report(self, flops_per_token: float, peak_flops: float | None) -> dict:
        from pretrain.training.metrics import mfu

        times = self.step_times_s
        tokens_per_step = self.batch_size * self.seq_len * self.accumulation
        tokens_per_s = tokens_per_step / statistics.fmean(times)
        return {"tokens_per_step": tokens_per_step, "tokens_per_s": tokens_per_s,
                "tokens_per_s_p50": tokens_per_step / percentile(times, 50),
                "step_time_s": {"mean": statistics.fmean(times), "p50": percentile(times, 50),
                                "p90": percentile(times, 90), "min": min(times)},
                "mfu": mfu(tokens_per_s, flops_per_token, peak_flops),
                "final_loss": self.losses[-1]}


@contextmanager
def one_rank_mesh(device: torch.device):
    """A 1-rank process group and device mesh, so FSDP2 shards (trivially) as in training."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh

    created = not dist.is_initialized()
    if created:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                store=dist.HashStore(), rank=0, world_size=1)
    try:
        yield init_device_mesh(device.type, (1,))
    finally:
        if created:
            dist.destroy_process_group()


def build_ours(settings: BenchSettings, config, device: torch.device, mesh, param_dtype: torch.dtype):
    """Our Llama exactly as training builds it, and its training loss."""
    from functools import partial

    from pretrain.training.parallelize import KernelChoice, build_parallel_model, check_kernels
    from pretrain.training.step import causal_lm_loss

    choice = KernelChoice(settings.attention, settings.fused_ce, settings.fused_ops, settings.fp8,
                          keys=("--attention", "--fused-ce", "--fused-ops", "--fp8"))
    fused_ce, ops = check_kernels(choice, config, device)
    model = build_parallel_model(
        config, device, mesh, init_seed=settings.seed,
        mixed_precision="bf16" if param_dtype == torch.bfloat16 else "fp32", fused_ops=ops,
        float8=settings.fp8, activation_checkpointing=settings.ac, compile=settings.compile)
    return model, partial(causal_lm_loss, model, fused_ce=fused_ce), {"fused_ce": fused_ce,
                                                                      "fused_ops": ops.name}


def build_hf(settings: BenchSettings, config, device: torch.device, mesh, param_dtype: torch.dtype):
    """transformers' LlamaForCausalLM of the same shape: SDPA attention, the same strategy,
    activation checkpointing and compile, cross-entropy of its full logits."""
    from model.hf import config_to_hf
    from model.kernels.optional import import_optional
    from pretrain.training.parallelize import apply_activation_checkpointing

    transformers = import_optional("transformers", "--compare hf")
    hf_config = transformers.LlamaConfig(**config_to_hf(config))
    hf_config._attn_implementation = "sdpa"
    with torch.device(device):
        model = transformers.LlamaForCausalLM(hf_config)
    apply_activation_checkpointing(model.model, settings.ac)  # LlamaModel has `.layers` too
    if settings.compile:
        for layer in model.model.layers:
            layer.compile()
    if mesh is not None:
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        policy = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=torch.float32)
        for layer in model.model.layers:
            fully_shard(layer, mesh=mesh, mp_policy=policy)
        fully_shard(model, mesh=mesh, mp_policy=policy)

    def loss_fn(batch):
        logits = model(input_ids=batch["input_ids"], use_cache=False).logits
        return F.cross_entropy(logits.flatten(0, 1).float(), batch["labels"].flatten())

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
    from model import LlamaConfig
    from model.flops import flops_per_token, param_count
    from pretrain.training.metrics import device_peak_flops

    check_settings(settings)
    if settings.threads:
        torch.set_num_threads(settings.threads)
    device = torch.device(settings.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = DTYPES[settings.dtype or ("bf16" if device.type == "cuda" else "fp32")]
    strategy = settings.strategy or ("fsdp2" if device.type == "cuda" else "single")
    config = LlamaConfig.from_name(settings.model, **settings.overrides,
                                   attention_backend=settings.attention)
    seq_len = settings.seq_len or config.max_seq_len
    if seq_len > config.max_seq_len:
        raise PretrainError(f"--seq-len {seq_len} exceeds the model's max_seq_len {config.max_seq_len}, "
                            f"which training refuses too (--seq-len)")
    # FSDP2's policy casts parameters to bf16 on CUDA (fp32 on CPU, as training); single device
    # trains under autocast instead.
    param_dtype = dtype if device.type == "cuda" else torch.float32
    autocast = dtype if strategy == "single" and dtype != torch.float32 else None
    mesh_context = one_rank_mesh(device) if strategy == "fsdp2" else nullcontext()
    with mesh_context as mesh:
        ours, loss_fn, kernels = build_ours(settings, config, device, mesh, param_dtype)
        timers = [StepTimer("ours", ours, loss_fn, config.vocab_size, settings, seq_len, device, autocast)]
        if compare_hf:
            hf_model, hf_loss_fn = build_hf(settings, config, device, mesh, param_dtype)
            timers.append(StepTimer("hf", hf_model, hf_loss_fn, config.vocab_size, settings,
                                    seq_len, device, autocast))
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        for index in range(settings.warmup + settings.steps):
            for timer in timers:  # alternate: drifting load on a shared machine hits both
                timer.step(timed=index >= settings.warmup)
            log.debug("step %d done", index)

    fpt = flops_per_token(config, seq_len)
    peak = device_peak_flops(device)
    q_like = torch.empty(1, 1, config.n_heads, config.head_dim, device=device, dtype=dtype,
                         requires_grad=True)
    report = {
        **asdict(settings), "seq_len": seq_len, "dtype": str(dtype).removeprefix("torch."),
        "strategy": strategy, "device": str(device), "device_name": device_name(device),
        "threads": torch.get_num_threads(),
        "attention": attention_backend_name(settings.attention, q_like), **kernels,
        "params": param_count(config), "flops_per_token": fpt,
        "peak_flops": peak, **timers[0].report(fpt, peak),
        "peak_memory_gb": peak_memory_gb(device),
        # one process: with compare_hf the peak covers both models (ours is built first)
        "peak_memory_kind": "cuda_max_allocated" if device.type == "cuda" else "process_peak_rss",
        "peak_memory_includes_hf": compare_hf,
        "versions": versions(),
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if compare_hf:
        hf = timers[1].report(fpt, peak)
        report["hf"] = hf
        # from medians: robust to load spikes on a shared machine (the mean ratio is also kept)
        report["speedup_vs_hf"] = report["tokens_per_s_p50"] / hf["tokens_per_s_p50"]
        report["speedup_vs_hf_mean"] = report["tokens_per_s"] / hf["tokens_per_s"]
    return report
