"""Float8 training (torchao), applied to a built model from outside, like compile and FSDP.

torchao's `convert_to_float8_training` swaps `nn.Linear` modules for `Float8Linear`
(tensorwise-scaled e4m3 matmuls with bf16/fp32 master weights); it needs an sm89+ GPU (H100)
and pays off under `torch.compile`, which fuses the scaling casts. Order (torchtitan's):
float8 → activation checkpointing → compile → FSDP.
"""

from __future__ import annotations

import torch
from torch import nn

from pretrain.errors import PretrainError


def float8_filter(module: nn.Module, fqn: str) -> bool:
    """Which linears become float8: every block projection whose both dims are multiples of
    16 (the float8 matmul's alignment), not the LM head (`output`), whose large logits are the
    most sensitive to float8 and whose loss runs fused in bf16."""
    return (isinstance(module, nn.Linear) and fqn.split(".")[-1] != "output"
            and module.in_features % 16 == 0 and module.out_features % 16 == 0)


def apply_float8(model: nn.Module, device: torch.device | str) -> int:
    """Convert `model`'s block linears to float8 training in place; returns how many.

    Raises `PretrainError` off an sm89+ CUDA device, and `model.kernels.MissingKernelPackage`
    (naming `pip install 'slm-pretrain[cuda]'`) without torchao.
    """
    from model.kernels.optional import import_optional

    device = torch.device(device)
    if device.type != "cuda" or torch.cuda.get_device_capability(device) < (8, 9):
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
        raise PretrainError(f"float8 training needs an sm89+ GPU (H100, L40, ...), got {name} "
                            "(--fp8)")
    float8 = import_optional("torchao.float8", "float8 training (--fp8)")
    converted = []

    def keep(module, fqn):
        if float8_filter(module, fqn):
            converted.append(fqn)
            return True
        return False

    float8.convert_to_float8_training(model, module_filter_fn=keep)
    return len(converted)
