"""Where liger-kernel's Triton kernels run for these tests: natively on CUDA (bf16 against the
float32 eager reference), or on the CPU under Triton's interpreter (`TRITON_INTERPRET=1`,
float32), which is how CI runs them: `tests/kernels/test_liger_interpreted.py` starts this
folder in a subprocess with that variable set, since Triton reads it when a kernel is defined.

The interpreter has three gaps that liger's kernels hit, and `_close_interpreter_gaps` closes
them for the test process only: it leaves Python float arguments unwrapped (its own "TODO: wrap
everything in triton tensors"; compiled kernels receive them as fp32 scalars, which is what the
patch gives the kernel); it does not map `libdevice.rsqrt`, which liger's RMSNorm imports
by name (the patch points that name at `tl.math.rsqrt`, the same function); and Triton 3.6
(the one torch 2.11 pins) turns a scalar into a Python int (`range(row_start, ...)`) with
`int()` of its shape-(1,) array, which numpy >= 2.4 refuses (triton-lang/triton#9171; the
patch squeezes the array first, as Triton 3.9 itself does).
"""

import os
from dataclasses import dataclass

import pytest
import torch

from model.kernels.optional import is_installed

INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"


@dataclass(frozen=True)
class Target:
    """Where and in which dtype the kernels run, and how close they must come to the float32
    eager reference (relative to the reference's largest entry)."""

    device: str
    dtype: torch.dtype
    tolerance: float


def _close_interpreter_gaps():
    import numpy as np
    import triton.language as tl
    from triton.runtime import interpreter

    import liger_kernel.ops.rms_norm as liger_rms_norm

    implicit_cvt = interpreter._implicit_cvt
    patch_lang_tensor = interpreter._patch_lang_tensor

    def wrap_floats(arg):
        if isinstance(arg, float):
            handle = interpreter.TensorHandle(np.array([arg], dtype=np.float32), tl.float32)
            return tl.tensor(handle, tl.float32)
        return implicit_cvt(arg)

    def index_scalars(tensor, scope):
        patch_lang_tensor(tensor, scope)
        scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.squeeze()))

    interpreter._implicit_cvt = wrap_floats
    interpreter._patch_lang_tensor = index_scalars  # called each time a kernel runs
    liger_rms_norm.rsqrt = lambda x: tl.math.rsqrt(x)  # looked up when the kernel runs


@pytest.fixture(scope="session")
def target() -> Target:
    if not is_installed("liger_kernel"):
        pytest.skip("liger-kernel is not installed (pip install 'slm-pretrain[test]')")
    if torch.cuda.is_available() and not INTERPRETED:
        return Target("cuda", torch.bfloat16, 2e-2)
    if not INTERPRETED:
        pytest.skip("liger-kernel runs on CUDA, or on the CPU under TRITON_INTERPRET=1 "
                    "(tests/kernels/test_liger_interpreted.py runs this folder that way)")
    _close_interpreter_gaps()
    return Target("cpu", torch.float32, 1e-5)
