"""Pure PyTorch Llama: config and presets, the decoder, kernels, generation, HF conversion.

Imports nothing else of ours and knows nothing of Lightning or distributed training.
`LlamaConfig`, `ModelError` and `model.flops` are plain Python; `Llama` (and with it torch) is
imported on first use, so `slm model info` and user errors stay fast.
"""

from model.config import LlamaConfig, ModelError

__all__ = ["LlamaConfig", "Llama", "ModelError"]


def __getattr__(name):
    if name == "Llama":
        from model.llama import Llama

        return Llama
    raise AttributeError(f"module 'model' has no attribute {name!r}")
