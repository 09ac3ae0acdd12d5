"""Lazy imports of the optional CUDA kernel packages (the `cuda` extra).

Nothing here imports a kernel package at module import time: `is_installed` only looks for
the package, and `import_optional` imports it on first use. A missing package is a user
mistake (they asked for a kernel that is not installed) and raises `MissingKernelPackage`,
a `ModelError`, whose one-line message names the extra to install.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from types import ModuleType

import torch

from model.config import ModelError

INSTALL_HINT = "pip install 'slm-pretrain[cuda]'"


class MissingKernelPackage(ModelError):
    """An optional kernel package (flash-attn, xformers, liger-kernel, torchao) is missing."""


def is_installed(module: str) -> bool:
    """True if `module` (dotted name) can be imported here; never imports it (a CUDA-only
    package can be slow or noisy to import)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a missing parent package of a dotted name
        return False


def import_optional(module: str, feature: str) -> ModuleType:
    """Import `module` for `feature` (e.g. "attention backend flash_attn"), or raise
    `MissingKernelPackage` naming the extra. Import errors other than "not installed" (a
    wheel built for another torch) are reported the same way, with their first line."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise MissingKernelPackage(f"{feature} needs the {module.split('.')[0]!r} package, which "
                                   f"does not import here ({reason}): {INSTALL_HINT}") from None


def triton_runs_on(device: torch.device | str) -> bool:
    """True if Triton kernels (liger-kernel's) can run on tensors of `device`: on CUDA, or
    anywhere under Triton's CPU interpreter (`TRITON_INTERPRET=1`, set before the kernels are
    imported; slow, for tests: `tests/kernels/liger`)."""
    return torch.device(device).type == "cuda" or os.environ.get("TRITON_INTERPRET") == "1"
