"""Float8 training (torchao), applied to a built model from outside, like compile and FSDP.

torchao's `convert_to_float8_training` swaps `nn.Linear` modules for `Float8Linear`
(tensorwise-scaled e4m3 matmuls with bf16/fp32 master weights). It pays off on an sm89+ GPU
(H100) under `torch.compile`, which fuses the scaling casts; `check_float8_device` refuses any
other device, where it would only be slower. Order (torchtitan's): fused kernels → float8 →
activation checkpointing → compile → FSDP.
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


def check_float8_device(device: torch.device | str, option: str) -> None:
    """`PretrainError` naming `option` unless `device` is an sm89+ GPU and torchao imports
    (else the message names `pip install 'slm-pretrain[cuda]'`)."""
    from model.kernels.optional import MissingKernelPackage, import_optional

    device = torch.device(device)
    if device.type != "cuda" or torch.cuda.get_device_capability(device) < (8, 9):
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
        raise PretrainError(f"float8 training needs an sm89+ GPU (H100, L40, ...), got {name} "
                            f"({option})")
    try:
        import_optional("torchao.float8", "float8 training")
    except MissingKernelPackage as e:
        raise PretrainError(f"{e} ({option})") from e


def convert_to_float8(model: nn.Module) -> int:
    """Convert `model`'s block linears (`float8_filter`) to float8 training in place, on any
    device (also meta); returns how many. Check the device first (`check_float8_device`)."""
    from model.kernels.optional import import_optional

    float8 = import_optional("torchao.float8", "float8 training")
    converted = []

    def keep(module, fqn):
        if float8_filter(module, fqn):
            converted.append(fqn)
            return True
        return False

    float8.convert_to_float8_training(model, module_filter_fn=keep)
    return len(converted)
