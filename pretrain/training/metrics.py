"""Throughput accounting: the device peak table and model FLOPs utilisation (MFU).

MFU = achieved model FLOP/s ÷ the device's dense bf16 peak. Achieved FLOP/s is
``tokens_per_s × flops_per_token`` with ``flops_per_token`` from ``model/flops.py`` (the one
place the formula lives). On CPU there is no meaningful peak, so MFU is omitted (None).
"""

from __future__ import annotations

import torch

# Dense (no 2:4 sparsity) bf16 tensor-core peak, TFLOP/s, from the vendors' data sheets.
# Matched as substrings of `torch.cuda.get_device_name()`, most specific first (the PCIe and NVL
# H100 parts run lower clocks and power than the SXM one).
PEAK_BF16_TFLOPS: dict[str, float] = {
    "H100 NVL": 835.0,
    "H100 PCIe": 756.0,
    "H200": 989.0,
    "H100": 989.0,  # SXM ("NVIDIA H100 80GB HBM3")
    "A100": 312.0,
}


def peak_flops_of(device_name: str) -> float | None:
    """Peak dense bf16 FLOP/s of the GPU called ``device_name``; None if not in the table."""
    for key, tflops in PEAK_BF16_TFLOPS.items():
        if key in device_name:
            return tflops * 1e12
    return None


def device_peak_flops(device: torch.device | str) -> float | None:
    """Peak dense bf16 FLOP/s (not TFLOP/s) of ``device``; None on CPU or an unknown GPU."""
    device = torch.device(device)
    if device.type != "cuda" or not torch.cuda.is_available():
        return None
    return peak_flops_of(torch.cuda.get_device_name(device))


def mfu(tokens_per_s: float, flops_per_token: float, peak_flops: float | None) -> float | None:
    """Model FLOPs utilisation in [0, 1] (per device: pass that device's tokens/s); None without a peak."""
    if not peak_flops:
        return None
    return tokens_per_s * flops_per_token / peak_flops


def memory_stats_gb(device: torch.device | str) -> dict[str, float]:
    """Peak allocated / reserved accelerator memory in GB since the last reset; {} on CPU."""
    device = torch.device(device)
    if device.type != "cuda":
        return {}
    return {
        "memory_allocated_gb": torch.cuda.max_memory_allocated(device) / 1e9,
        "memory_reserved_gb": torch.cuda.max_memory_reserved(device) / 1e9,
    }
