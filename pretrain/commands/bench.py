"""`slm bench --model NAME [...] [--json] [--compare hf]`: training-step throughput, MFU and
peak memory of a preset on random tokens (see `pretrain/bench.py`)."""

from __future__ import annotations

import json


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("bench", help="training-step throughput, MFU and peak memory")
    p.add_argument("--model", required=True, metavar="NAME", help="preset (see `slm model list`)")
    p.add_argument("--seq-len", type=int, metavar="N", help="tokens per sequence (default: preset's max)")
    p.add_argument("--micro-batch-size", type=int, default=1, metavar="N", help="sequences per step")
    p.add_argument("--steps", type=int, default=10, metavar="N", help="timed steps (default 10)")
    p.add_argument("--warmup", type=int, default=3, metavar="N", help="untimed steps first (default 3)")
    p.add_argument("--attention", default="auto", metavar="NAME",
                   help="attention backend: auto, flash_attn, flash_attn_cute, sdpa_cudnn, xformers, "
                        "sdpa, flex, eager (default auto = fastest available)")
    p.add_argument("--fused-ce", default="auto", metavar="IMPL",
                   help="fused LM head + cross-entropy: auto, chunked, liger, eager (full logits), "
                        "none (model(x) then F.cross_entropy) (default auto)")
    p.add_argument("--no-fused-ce", dest="fused_ce", action="store_const", const="none",
                   help="same as --fused-ce none")
    p.add_argument("--fused-ops", default="none", metavar="NAME",
                   help="fused RMSNorm/rotary/SwiGLU: none, auto, liger, torch (default none)")
    p.add_argument("--compile", action="store_true", help="torch.compile each block")
    p.add_argument("--fp8", action="store_true", help="float8 training via torchao (sm89+ GPU)")
    p.add_argument("--ac", default="none", metavar="MODE",
                   help="activation checkpointing: none, full, selective (default none)")
    p.add_argument("--dtype", metavar="DTYPE", help="bf16 (autocast) or fp32 (default: bf16 on CUDA, fp32 on CPU)")
    p.add_argument("--device", metavar="DEVICE", help="cpu or cuda (default: cuda if available)")
    p.add_argument("--threads", type=int, metavar="N", help="CPU threads for torch")
    p.add_argument("--seed", type=int, default=0, help="seed of weights and random tokens")
    p.add_argument("--compare", choices=["hf"], help="also time transformers' LlamaForCausalLM")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args) -> int:
    from pretrain.bench import BenchSettings, run_bench

    settings = BenchSettings(
        model=args.model, seq_len=args.seq_len, micro_batch_size=args.micro_batch_size,
        steps=args.steps, warmup=args.warmup, attention=args.attention, fused_ce=args.fused_ce,
        fused_ops=args.fused_ops, compile=args.compile, fp8=args.fp8, ac=args.ac,
        dtype=args.dtype, device=args.device, threads=args.threads, seed=args.seed)
    report = run_bench(settings, compare_hf=args.compare == "hf")
    if args.json:
        print(json.dumps(report))
    else:
        print(format_report(report))
    return 0


def format_report(r: dict) -> str:
    mfu = "n/a (no peak for this device)" if r["mfu"] is None else f"{100 * r['mfu']:.1f}%"
    t = r["step_time_s"]
    lines = [
        f"model {r['model']} ({r['params'] / 1e6:.1f}M params), {r['micro_batch_size']} x "
        f"{r['seq_len']} tokens/step, {r['dtype']} on {r['device_name']} ({r['threads']} threads)",
        f"kernels: attention {r['attention']}, fused CE {r['fused_ce']}, fused ops {r['fused_ops']}, "
        f"compile {r['compile']}, fp8 {r['fp8']}, AC {r['ac']}",
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
