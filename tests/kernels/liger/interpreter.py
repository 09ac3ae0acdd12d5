"""Run liger-kernel's Triton kernels on a CPU under Triton's interpreter (`TRITON_INTERPRET=1`,
which Triton reads when a kernel is defined: set it before liger is imported).

The interpreter has three gaps that liger's kernels hit; `close_gaps()` closes them in this
process only (tests): it leaves Python float arguments unwrapped (its own "TODO: wrap
everything in triton tensors"; compiled kernels receive them as fp32 scalars, which is what the
patch gives the kernel); it does not map `libdevice.rsqrt`, which liger's RMSNorm imports by
name (the patch points that name at `tl.math.rsqrt`, the same function); and Triton 3.6 (the
one torch 2.11 pins) turns a scalar into a Python int (`range(row_start, ...)`) with `int()` of
its shape-(1,) array, which numpy >= 2.4 refuses (triton-lang/triton#9171; the patch squeezes
the array first, as Triton 3.9 itself does).

`python tests/kernels/liger/interpreter.py ARGS...` is `slm ARGS...` with the gaps closed (for
training runs under the interpreter; Lightning starts the other ranks with the same command).
"""

import sys
from pathlib import Path


def close_gaps() -> None:
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


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repository root
    from pretrain.cli import main

    close_gaps()
    sys.exit(main(sys.argv[1:]))
