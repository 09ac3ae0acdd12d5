"""`slm bench (--model NAME | --config FILE.yaml) [...] [--json] [--compare hf]`: throughput,
MFU and peak memory of the training step `slm pretrain` runs (see `pretrain/bench.py`);
`--estimate-memory [--devices N]` predicts its peak GPU memory per rank without a GPU
(`pretrain/memory_estimate.py`)."""

from __future__ import annotations

import json
from pathlib import Path

from pretrain.errors import PretrainError

# `slm pretrain` recipe keys → BenchSettings fields (flags given on the command line win).
RECIPE_MODEL_KEYS = {"preset": "model", "attention_backend": "attention", "fused_ce": "fused_ce",
                     "fused_ops": "fused_ops", "compile": "compile", "float8": "fp8",
                     "activation_checkpointing": "ac", "noise_scale": "noise_scale"}
MODEL_SHAPE_KEYS = ("vocab_size", "dim", "n_layers", "n_heads", "n_kv_heads", "ffn_dim",
                    "max_seq_len", "rope_theta", "tie_embeddings")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("bench", help="throughput, MFU and peak memory of the training step")
    p.add_argument("--model", metavar="NAME", help="preset (see `slm model list`)")
    p.add_argument("--config", metavar="FILE", help="take model, kernels, seq_len and micro-batch from "
                   "a `slm pretrain` recipe (not its accumulation: a step's tokens/s does not depend "
                   "on it; give --accumulation for that)")
    p.add_argument("--seq-len", type=int, metavar="N", help="tokens per sequence (default: preset's max)")
    p.add_argument("--micro-batch-size", type=int, metavar="N", help="sequences per micro-batch (default 1)")
    p.add_argument("--accumulation", type=int, metavar="N",
                   help="micro-batches per step (default 1, with --config too)")
    p.add_argument("--steps", type=int, metavar="N", help="timed steps (default 10)")
    p.add_argument("--warmup", type=int, metavar="N", help="untimed steps first (default 3)")
    p.add_argument("--attention", metavar="NAME",
                   help="attention backend: auto, flash_attn, flash_attn_cute, sdpa_cudnn, xformers, "
                        "sdpa, flex, eager (default auto = fastest available)")
    p.add_argument("--fused-ce", metavar="IMPL",
                   help="LM head + cross-entropy: auto, chunked, liger, eager (full logits) (default auto)")
    p.add_argument("--no-fused-ce", dest="fused_ce", action="store_const", const="eager",
                   help="same as --fused-ce eager")
    p.add_argument("--fused-ops", metavar="NAME",
                   help="fused RMSNorm/rotary/SwiGLU: none, auto, liger, torch (default none)")
    p.add_argument("--compile", action="store_true", default=None, help="torch.compile each block")
    p.add_argument("--fp8", action="store_true", default=None, help="float8 training via torchao (sm89+ GPU)")
    p.add_argument("--ac", metavar="MODE",
                   help="activation checkpointing: none, full, selective (default none)")
    p.add_argument("--noise-scale", action="store_true", default=None,
                   help="also measure the gradient noise scale's small batch (as model.noise_scale)")
    p.add_argument("--strategy", metavar="NAME",
                   help="single or fsdp2 (FSDP2 on one device, its mixed-precision policy; default: "
                        "fsdp2 on CUDA, single on CPU)")
    p.add_argument("--dtype", metavar="DTYPE",
                   help="bf16 or fp32 (default: bf16 on CUDA, fp32 on CPU)")
    p.add_argument("--device", metavar="DEVICE", help="cpu or cuda (default: cuda if available)")
    p.add_argument("--threads", type=int, metavar="N", help="CPU threads for torch")
    p.add_argument("--seed", type=int, help="seed of weights and random tokens (default 0)")
    p.add_argument("--compare", choices=["hf"], help="also time transformers' LlamaForCausalLM")
    p.add_argument("--estimate-memory", action="store_true",
                   help="predict peak GPU memory per rank of FSDP2 training without a GPU (fake "
                        "tensors + torch's FSDP2 memory tracker; see pretrain/memory_estimate.py)")
    p.add_argument("--devices", type=int, metavar="N",
                   help="GPUs FSDP2 shards over, for --estimate-memory (default 1)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args) -> int:
    from pretrain.bench import BenchSettings, run_bench

    chosen = recipe_settings(Path(args.config)) if args.config else {}
    flags = {"model": args.model, "seq_len": args.seq_len, "micro_batch_size": args.micro_batch_size,
             "accumulation": args.accumulation, "steps": args.steps, "warmup": args.warmup,
             "attention": args.attention, "fused_ce": args.fused_ce, "fused_ops": args.fused_ops,
             "compile": args.compile, "fp8": args.fp8, "ac": args.ac, "noise_scale": args.noise_scale,
             "strategy": args.strategy,
             "dtype": args.dtype, "device": args.device, "threads": args.threads, "seed": args.seed}
    chosen.update({key: value for key, value in flags.items() if value is not None})
    if "model" not in chosen:
        raise PretrainError("give --model NAME or --config FILE.yaml (slm bench)")
    if args.estimate_memory:
        return estimate(BenchSettings(**chosen), args)
    if args.devices is not None:
        raise PretrainError("--devices applies to --estimate-memory only; a benchmark runs on one "
                            "device (--devices)")
    report = run_bench(BenchSettings(**chosen), compare_hf=args.compare == "hf")
    print(json.dumps(report) if args.json else format_report(report))
    return 0


def estimate(settings, args) -> int:
    """`--estimate-memory`: the predicted peak memory per GPU (pretrain/memory_estimate.py)."""
    from pretrain.memory_estimate import estimate_memory, format_estimate

    for flag, given in (("--compare", args.compare), ("--device", args.device), ("--strategy", args.strategy),
                        ("--steps", args.steps), ("--warmup", args.warmup)):
        if given is not None:
            raise PretrainError(f"{flag} does not apply to --estimate-memory, which models one FSDP2 "
                                f"training step on CUDA GPUs ({flag})")
    devices = 1 if args.devices is None else args.devices
    if args.config and args.accumulation is None:
        # Memory depends on whether a step accumulates (FSDP2 then keeps unsharded fp32 gradients
        # between micro-batches): take the recipe's global batch at `devices`.
        from dataclasses import replace

        accumulation = recipe_accumulation(Path(args.config), settings.seq_len,
                                           settings.micro_batch_size, devices)
        if accumulation is not None:
            settings = replace(settings, accumulation=accumulation)
    report = estimate_memory(settings, devices)
    print(json.dumps(report) if args.json else format_estimate(report))
    return 0


def recipe_settings(path: Path) -> dict:
    """BenchSettings fields from a `slm pretrain` recipe: the model section (preset, shape
    overrides, kernels), seq_len and micro-batch. Not the recipe's accumulation: sized for one
    device it is 128 micro-batches for the 1.1B recipe, minutes per step, while tokens/s per
    micro-batch does not depend on it; accumulation stays 1 unless --accumulation is given."""
    import yaml

    try:
        recipe = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise PretrainError(f"cannot read the recipe: {e.__class__.__name__} ({path})") from None
    model, data = recipe.get("model") or {}, recipe.get("data") or {}
    settings = {field: model[key] for key, field in RECIPE_MODEL_KEYS.items() if key in model}
    settings["overrides"] = {key: model[key] for key in MODEL_SHAPE_KEYS if model.get(key) is not None}
    if "seq_len" in data:
        settings["seq_len"] = data["seq_len"]
    if "micro_batch_size" in data:
        settings["micro_batch_size"] = data["micro_batch_size"]
    strategy = (recipe.get("trainer") or {}).get("strategy")
    settings["strategy"] = "fsdp2" if strategy == "fsdp2" else "single"
    if model.get("mixed_precision") == "fp32":
        settings["dtype"] = "fp32"
    return settings


def recipe_accumulation(path: Path, seq_len: int, micro_batch_size: int, devices: int) -> int | None:
    """Micro-batches per step that a recipe's ``data.global_batch_tokens`` means on ``devices``
    at this sequence length and micro-batch (None when the recipe gives no global batch)."""
    import yaml

    from pretrain.training.plan import accumulation_for

    data = (yaml.safe_load(path.read_text()) or {}).get("data") or {}
    if "global_batch_tokens" not in data or seq_len is None:
        return None
    return accumulation_for(data["global_batch_tokens"], seq_len, micro_batch_size, devices)


def format_report(r: dict) -> str:
    mfu = "n/a (no peak for this device)" if r["mfu"] is None else f"{100 * r['mfu']:.1f}%"
    t = r["step_time_s"]
    lines = [
        f"model {r['model']} ({r['params'] / 1e6:.1f}M params), {r['accumulation']} x "
        f"{r['micro_batch_size']} x {r['seq_len']} tokens/step, {r['dtype']} on {r['device_name']} "
        f"({r['threads']} threads), strategy {r['strategy']}",
        f"kernels: attention {r['attention']}, fused CE {r['fused_ce']}, fused ops {r['fused_ops']}, "
        f"compile {r['compile']}, fp8 {r['fp8']}, AC {r['ac']}, noise scale {r['noise_scale']}",
        f"tokens/s   {r['tokens_per_s']:,.0f}",
        f"step time  mean {t['mean'] * 1e3:.1f} ms, p50 {t['p50'] * 1e3:.1f} ms, "
        f"p90 {t['p90'] * 1e3:.1f} ms ({r['steps']} steps after {r['warmup']} warm-up)",
        f"MFU        {mfu}",
        f"peak mem   {r['peak_memory_gb']:.2f} GB ({r['peak_memory_kind']})",
    ]
    if "hf" in r:
        hf = r["hf"]
        lines.append(f"HF LlamaForCausalLM: {hf['tokens_per_s']:,.0f} tokens/s, step p50 "
                     f"{hf['step_time_s']['p50'] * 1e3:.1f} ms -> ours / HF = {r['speedup_vs_hf']:.2f}x")
    v = r["versions"]
    lines.append("versions: " + ", ".join(f"{k} {v[k]}" for k in v if v[k] is not None))
    return "\n".join(lines)
