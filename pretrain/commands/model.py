"""`slm model list | info NAME`: the model presets, their sizes and training cost per token."""

from __future__ import annotations

import json


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("model", help="list model presets and show their sizes")
    sub = parser.add_subparsers(dest="model_command", metavar="ACTION", required=True)

    listing = sub.add_parser("list", help="table of presets: shape and parameter counts")
    listing.set_defaults(func=run_list)

    info = sub.add_parser("info", help="shape, parameters, FLOPs/token, weight memory of a preset")
    info.add_argument("name", metavar="NAME", help="preset name (see `slm model list`)")
    info.add_argument("--seq-len", type=int, metavar="N",
                      help="sequence length for FLOPs/token (default: the preset's max_seq_len)")
    info.add_argument("--json", action="store_true", help="print one JSON object")
    info.set_defaults(func=run_info)


def human_count(n: float) -> str:
    """Three significant digits and a unit: 1_100_048_384 -> '1.10B', 98_624 -> '98.6K'."""
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            value = n / scale
            decimals = 2 if value < 10 else 1 if value < 100 else 0
            return f"{value:.{decimals}f}{unit}"
    return str(int(n))


def run_list(args) -> int:
    from model.config import PRESETS
    from model.flops import non_embedding_param_count, param_count

    header = ("name", "layers", "dim", "heads", "kv", "ffn", "vocab", "tied", "params",
              "non-emb")
    rows = [header] + [
        (name, c.n_layers, c.dim, c.n_heads, c.n_kv_heads, c.ffn_dim, c.vocab_size,
         "yes" if c.tie_embeddings else "no", human_count(param_count(c)),
         human_count(non_embedding_param_count(c)))
        for name, c in PRESETS.items()]
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(header))]
    for row in rows:
        print("  ".join(str(v).ljust(w) if i == 0 else str(v).rjust(w)
                        for i, (v, w) in enumerate(zip(row, widths))).rstrip())
    return 0


def model_info(name: str, seq_len: int | None = None) -> dict:
    """Everything `slm model info` reports about preset `name`, as plain JSON values."""
    from model import LlamaConfig, ModelError
    from model.flops import (flops_per_token, non_embedding_param_count, param_count,
                             weight_memory_bytes)

    config = LlamaConfig.from_name(name)
    seq_len = config.max_seq_len if seq_len is None else seq_len
    if seq_len < 1:
        raise ModelError(f"--seq-len must be a positive integer, got {seq_len} (--seq-len)")
    return {
        "name": name,
        "config": config.to_dict(),
        "head_dim": config.head_dim,
        "params_total": param_count(config),
        "params_non_embedding": non_embedding_param_count(config),
        "seq_len": seq_len,
        "flops_per_token": flops_per_token(config, seq_len),
        "weight_memory_bf16_bytes": weight_memory_bytes(config, bytes_per_param=2),
    }


def run_info(args) -> int:
    info = model_info(args.name, args.seq_len)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    c = info["config"]
    print(f"{info['name']}")
    print(f"  layers {c['n_layers']}, dim {c['dim']}, heads {c['n_heads']} (kv {c['n_kv_heads']}, "
          f"head_dim {info['head_dim']}), ffn {c['ffn_dim']}, vocab {c['vocab_size']}, "
          f"embeddings {'tied' if c['tie_embeddings'] else 'untied'}")
    print(f"  max_seq_len {c['max_seq_len']}, rope_theta {c['rope_theta']:g}, "
          f"norm_eps {c['norm_eps']:g}")
    print(f"  parameters        {info['params_total']:,} total, "
          f"{info['params_non_embedding']:,} non-embedding")
    print(f"  FLOPs/token       {info['flops_per_token']:.4g} (training, fwd+bwd, "
          f"seq_len {info['seq_len']})")
    print(f"  weights in bf16   {info['weight_memory_bf16_bytes'] / 2**30:.2f} GiB")
    return 0
