"""Where liger-kernel's Triton kernels run for these tests: natively on CUDA (bf16 against the
float32 eager reference), or on the CPU under Triton's interpreter (`TRITON_INTERPRET=1`,
float32), which is how CI runs them: `tests/kernels/test_liger_interpreted.py` starts this
folder in a subprocess with that variable set, since Triton reads it when a kernel is defined.

Under the interpreter, `interpreter.close_gaps()` first patches three gaps of it that liger's
kernels hit (see there).
"""

import os
from dataclasses import dataclass

import pytest
import torch

from model.kernels.optional import is_installed
from tests.kernels.liger.interpreter import close_gaps

INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"


@dataclass(frozen=True)
class Target:
    """Where and in which dtype the kernels run, and how close they must come to the float32
    eager reference (relative to the reference's largest entry)."""

    device: str
    dtype: torch.dtype
    tolerance: float


@pytest.fixture(scope="session")
def target() -> Target:
    if not is_installed("liger_kernel"):
        pytest.skip("liger-kernel is not installed (pip install 'slm-pretrain[test]')")
    if torch.cuda.is_available() and not INTERPRETED:
        return Target("cuda", torch.bfloat16, 2e-2)
    if not INTERPRETED:
        pytest.skip("liger-kernel runs on CUDA, or on the CPU under TRITON_INTERPRET=1 "
                    "(tests/kernels/test_liger_interpreted.py runs this folder that way)")
    close_gaps()
    return Target("cpu", torch.float32, 1e-5)
