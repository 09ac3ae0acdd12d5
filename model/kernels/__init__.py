"""Fast kernels for the Llama of `model/`, selected by name; the model's math stays eager.

- Attention backends (`attention_backends`): flash_attn, flash_attn_cute, sdpa_cudnn,
  xformers, flex, named in `model.attention.BACKENDS` (which loads them on first use), so
  `LlamaConfig(attention_backend=...)` selects them and "auto" picks the best available.
- Fused RMSNorm / rotary / SwiGLU (`fused_ops.apply_fused_ops(model, name)`).
- Fused LM head + cross-entropy without full logits (`cross_entropy.linear_cross_entropy`).

Optional packages (flash-attn, xformers, liger-kernel) are imported on first use; a missing
one raises `MissingKernelPackage` (a `ModelError`) naming `pip install 'slm-pretrain[cuda]'`.
"""

from model.kernels.cross_entropy import linear_cross_entropy
from model.kernels.fused_ops import FUSED_OPS, apply_fused_ops
from model.kernels.optional import MissingKernelPackage

__all__ = ["linear_cross_entropy", "apply_fused_ops", "FUSED_OPS", "MissingKernelPackage"]
