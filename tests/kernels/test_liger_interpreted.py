"""liger-kernel's parity tests (tests/kernels/liger) on a machine without CUDA: the same tests,
run in a subprocess under Triton's CPU interpreter. Triton decides between compiling and
interpreting when a kernel is defined (on import), hence the separate process."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from model.kernels.optional import is_installed

LIGER_TESTS = Path(__file__).parent / "liger"


@pytest.mark.skipif(torch.cuda.is_available(), reason="with CUDA tests/kernels/liger runs natively")
@pytest.mark.skipif(not (is_installed("triton") and is_installed("liger_kernel")),
                    reason="needs triton and liger-kernel (pip install 'slm-pretrain[test]')")
def test_liger_kernels_match_eager_under_the_triton_interpreter():
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", str(LIGER_TESTS), "-q", "-p", "no:cacheprovider",
         "-o", "addopts=", "-rs"],
        env={**os.environ, "TRITON_INTERPRET": "1"}, capture_output=True, text=True, timeout=600,
        cwd=Path(__file__).parents[2])
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    counts = dict((word, int(n)) for n, word in re.findall(r"(\d+) (passed|skipped|failed)", output))
    assert counts.get("passed", 0) >= 9 and "skipped" not in counts, output
