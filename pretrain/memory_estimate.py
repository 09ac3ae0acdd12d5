"""`slm bench --estimate-memory`: peak GPU memory per rank of a training step, without a GPU.

The method of torchtitan's ``scripts/estimate/estimation.py``: a fake process group of world
size N (``FakeStore`` + ``init_process_group("fake")``: collectives return at once), the model
built under ``FakeTensorMode`` (tensors with shapes, dtypes and devices but no storage, so the
1.1B costs no memory), and two real training steps through torch's ``FSDPMemTracker``, which
records every tensor's bytes by kind (sharded and unsharded parameters and gradients, all-gather
and reduce-scatter buffers, optimizer states, activations, temporaries, inputs) and the peak of
their sum. The first step creates AdamW's states; the peak is over both.

What runs is what training runs: ``build_parallel_model`` (FSDP2 per block then the root, the
bf16 parameter policy with fp32 gradient reduction, activation checkpointing) and
``pretrain.training.step.training_step`` (``causal_lm_loss``, clipping, AdamW), with
``min(accumulation, 2)`` micro-batches: from the second one on, FSDP2 keeps unsharded gradients
between micro-batches, and more add nothing.

Fake CUDA tensors need a CUDA build of torch to run backward, so the fake tensors live on the
CPU device; byte counts do not depend on the device (the tracker rounds each block to 512 bytes
as the CUDA caching allocator does). Kernels that cannot run on fake CPU tensors are estimated
with their torch equivalent, and the report lists each substitution under ``approximations``:
flash-attn / cuDNN / xformers / flex attention → SDPA (all save O(T) per head, not the
[T, T] scores), liger cross-entropy → chunked (neither materialises the full logits), liger fused
ops → torch's, and ``compile`` → eager (inductor's fusions save fewer intermediates, so the
eager estimate errs high). Not counted: the CUDA context (~0.5 GiB) and the caching allocator's
fragmentation, hence the 10% headroom of ``fits``.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import replace

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from pretrain.bench import DTYPES, BenchSettings, check_settings
from pretrain.errors import PretrainError

GIB = 1024 ** 3
HEADROOM = 0.9  # a prediction "fits" a card when it is at most 90% of the card's memory

# Kernel names → the torch equivalent the estimate runs on fake CPU tensors.
ATTENTION_STANDIN = {"auto": "sdpa", "sdpa": "sdpa", "eager": "eager"}  # others: "sdpa"
FUSED_CE_STANDIN = {"auto": "chunked", "liger": "chunked", "chunked": "chunked", "eager": "eager"}
FUSED_OPS_STANDIN = {"none": "none", "torch": "torch", "auto": "torch", "liger": "torch"}


class _FakeScalars(TorchDispatchMode):
    """Answers a fake tensor's ``.item()`` / ``bool()`` (which have no value) with 1: the step
    sees a finite loss and gradient norm and updates, its most memory-hungry path; AdamW's step
    count reads as 1. Also answers ``.device`` without a trip through ``FakeTensorMode``."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.prim.device.default and hasattr(args[0], "fake_device"):
            return args[0].fake_device  # asked ~10 times per op by the tracker: answer it here
        if func is torch.ops.aten._local_scalar_dense.default:
            dtype = args[0].dtype
            return True if dtype == torch.bool else 1.0 if dtype.is_floating_point else 1
        return func(*args, **(kwargs or {}))


@contextmanager
def fake_process_group(world_size: int):
    """A process group of ``world_size`` fake ranks (this process is rank 0)."""
    import torch.distributed as dist
    from torch.testing._internal.distributed.fake_pg import FakeStore

    if dist.is_initialized():
        raise PretrainError("the memory estimate needs its own (fake) process group; one is already "
                            "initialised (--estimate-memory)")
    dist.init_process_group("fake", store=FakeStore(), rank=0, world_size=world_size)
    try:
        yield
    finally:
        dist.destroy_process_group()


@contextmanager
def _forward_method_tracked(model, tracker):
    """Make the root's ``forward_hidden`` count as a forward of the root for ``tracker``.

    ``FSDPMemTracker`` sees a module's forward through hooks that ``nn.Module.__call__`` runs:
    its module tracker's global hooks and its wrappers of FSDP2's pre/post-forward hooks. The
    training loss calls ``model.forward_hidden`` (``register_fsdp_forward_method``), which calls
    ``FSDPState._pre_forward`` / ``_post_forward`` directly; route those through the same hooks.
    Enter inside the tracker (on exit, the tracker reinstalls FSDP2's own hooks)."""
    state = model._get_fsdp_state()
    fsdp_pre = model._forward_pre_hooks[state._pre_forward_hook_handle.id]
    fsdp_post = model._forward_hooks[state._post_forward_hook_handle.id]
    modules = tracker._mod_tracker

    def pre_forward(module, args, kwargs):
        modules._fw_pre_hook(module, args)
        return fsdp_pre(module, args, kwargs)

    def post_forward(module, args, output):
        modules._fw_post_hook(module, args, output)
        return fsdp_post(module, args, output)

    state._pre_forward, state._post_forward = pre_forward, post_forward
    try:
        yield
    finally:
        del state._pre_forward, state._post_forward


def standins(settings: BenchSettings) -> tuple[BenchSettings, list[str]]:
    """``settings`` with every kernel the estimate cannot run replaced by its torch equivalent,
    and one line per substitution."""
    notes = []
    attention = ATTENTION_STANDIN.get(settings.attention, "sdpa")
    fused_ce = FUSED_CE_STANDIN.get(settings.fused_ce, settings.fused_ce)
    fused_ops = FUSED_OPS_STANDIN.get(settings.fused_ops, settings.fused_ops)
    for what, asked, used in (("attention", settings.attention, attention),
                              ("fused CE", settings.fused_ce, fused_ce),
                              ("fused ops", settings.fused_ops, fused_ops)):
        if asked != used and asked != "auto":
            notes.append(f"{what} {asked} estimated as {used}")
        elif asked == "auto":
            notes.append(f"{what} auto estimated as {used}")
    if settings.compile:
        notes.append("compile estimated eager (compiled blocks save fewer intermediates)")
    return replace(settings, attention=attention, fused_ce=fused_ce, fused_ops=fused_ops,
                   compile=False), notes


def track_training_step(settings: BenchSettings, devices: int, *, fake: bool = True) -> dict:
    """The ``FSDPMemTracker`` peak (bytes, one rank) of two training steps of ``settings`` under
    FSDP2 over ``devices`` ranks on the CPU device. ``fake=True``: fake tensors and a fake
    process group of ``devices`` ranks; ``fake=False``: real tensors in the process group
    already initialised (whose world size must be ``devices``), for checking the estimate.
    Returns ``{"peak_bytes", "breakdown": {kind: bytes at the peak}}``."""
    from contextlib import nullcontext

    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.distributed._tools.fsdp2_mem_tracker import FSDPMemTracker
    from torch.distributed.device_mesh import init_device_mesh

    from model import LlamaConfig
    from pretrain.training.optim import build_adamw
    from pretrain.training.parallelize import KernelChoice, build_parallel_model, check_kernels
    from pretrain.training.step import causal_lm_loss, training_step

    device = torch.device("cpu")
    config = LlamaConfig.from_name(settings.model, **settings.overrides,
                                   attention_backend=settings.attention)
    seq_len = settings.seq_len or config.max_seq_len
    choice = KernelChoice(settings.attention, settings.fused_ce, settings.fused_ops, False,
                          keys=("--attention", "--fused-ce", "--fused-ops", "--fp8"))
    fused_ce, ops = check_kernels(choice, config, device)
    param_dtype = DTYPES[settings.dtype or "bf16"]
    group = fake_process_group(devices) if fake else nullcontext()
    with group:
        mesh = init_device_mesh("cpu", (devices,))
        with FakeTensorMode() if fake else nullcontext(), _FakeScalars() if fake else nullcontext():
            model = build_parallel_model(
                config, device, mesh, init_seed=settings.seed, fused_ops=ops,
                activation_checkpointing=settings.ac, fsdp_param_dtype=param_dtype)
            optimizer = build_adamw(model, lr=1e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
            generator = torch.Generator().manual_seed(settings.seed)
            tokens = [torch.randint(0, config.vocab_size, (settings.micro_batch_size, seq_len + 1),
                                    generator=generator)
                      for _ in range(min(settings.accumulation, 2))]
            batches = [{"input_ids": t[:, :-1], "labels": t[:, 1:]} for t in tokens]
            tracker = FSDPMemTracker(model, optimizer)
            tracker.track_inputs(batches)

            def loss_fn(batch):
                # The tracker's per-module statistics refuse a module's second forward (the next
                # micro-batch or step); the global peak, all this reads, is kept across resets.
                tracker.reset_mod_stats()
                return causal_lm_loss(model, batch, fused_ce)

            with tracker, _forward_method_tracked(model, tracker):
                for _ in range(2):  # the first step creates AdamW's states
                    training_step(model, optimizer, batches, loss_fn, grad_clip=1.0)
            peak = tracker.get_tracker_snapshot("peak")[device]
    breakdown = {str(getattr(kind, "value", kind)): int(n) for kind, n in peak.items() if kind != "Total"}
    return {"peak_bytes": int(peak["Total"]), "breakdown": breakdown}


def estimate_memory(settings: BenchSettings, devices: int, cards_gib: dict[str, float] | None = None) -> dict:
    """Predicted peak memory per rank of ``settings`` trained with FSDP2 on ``devices`` GPUs
    (the report of ``slm bench --estimate-memory --json``)."""
    from model import LlamaConfig
    from model.flops import param_count

    check_settings(settings)
    if devices < 1:
        raise PretrainError(f"--devices must be >= 1, got {devices}")
    if settings.fp8:
        raise PretrainError("the memory estimate does not model float8 training (torchao's "
                            "float8 linears need a GPU) (--fp8)")
    if settings.noise_scale:
        raise PretrainError("the memory estimate does not model the noise scale's extra gradient "
                            "reduction (--noise-scale)")
    config = LlamaConfig.from_name(settings.model, **settings.overrides)
    seq_len = settings.seq_len or config.max_seq_len
    if seq_len > config.max_seq_len:
        raise PretrainError(f"--seq-len {seq_len} exceeds the model's max_seq_len {config.max_seq_len}, "
                            f"which training refuses too (--seq-len)")
    estimated, notes = standins(settings)
    start = time.perf_counter()
    tracked = track_training_step(estimated, devices)
    seconds = time.perf_counter() - start
    peak = tracked["peak_bytes"]
    cards = cards_gib or CARDS_GIB
    return {
        "model": settings.model, "params": param_count(config), "devices": devices,
        "micro_batch_size": settings.micro_batch_size, "seq_len": seq_len,
        "accumulation": settings.accumulation, "dtype": settings.dtype or "bf16", "ac": settings.ac,
        "attention": settings.attention, "fused_ce": settings.fused_ce, "fused_ops": settings.fused_ops,
        "compile": settings.compile,
        "predicted_peak_bytes": peak, "predicted_peak_gib": peak / GIB,
        "breakdown_bytes": tracked["breakdown"],
        "fits": {card: peak <= HEADROOM * gib * GIB for card, gib in cards.items()},
        "approximations": notes, "method": "FakeTensorMode + FSDPMemTracker, fake process group",
        "estimate_seconds": seconds, "torch": torch.__version__,
    }


# Usable memory of the cards the README table names (torch.cuda.mem_get_info's total).
CARDS_GIB = {"80GB": 79.2, "40GB": 39.4}


def format_estimate(r: dict) -> str:
    def gib(n: int) -> str:
        return f"{n / GIB:.2f} GiB" if n >= GIB / 10 else f"{n / 1024 ** 2:.2f} MiB"

    lines = [f"model {r['model']} ({r['params'] / 1e6:.1f}M params), FSDP2 over {r['devices']} GPU(s), "
             f"{r['accumulation']} x {r['micro_batch_size']} x {r['seq_len']} tokens/step, {r['dtype']}, "
             f"AC {r['ac']}",
             f"predicted peak memory per GPU: {gib(r['predicted_peak_bytes'])}"]
    lines += [f"  {kind:<16} {gib(n)}" for kind, n in r["breakdown_bytes"].items() if n]
    lines.append("fits (≤ 90% of the card): " + ", ".join(
        f"{card} {'yes' if ok else 'NO'}" for card, ok in r["fits"].items()))
    if r["approximations"]:
        lines.append("approximations: " + "; ".join(r["approximations"]))
    lines.append(f"({r['method']}; {r['estimate_seconds']:.1f} s, torch {r['torch']})")
    return "\n".join(lines)
