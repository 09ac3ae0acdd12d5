"""Pure PyTorch Llama: config and presets, the decoder, kernels, generation, HF conversion.

Imports nothing else of ours and knows nothing of Lightning or distributed training.
"""

from model.config import LlamaConfig, ModelError
from model.llama import Llama

__all__ = ["LlamaConfig", "Llama", "ModelError"]
