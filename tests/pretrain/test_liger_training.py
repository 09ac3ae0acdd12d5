"""Training with liger-kernel's kernels (`model.fused_ops: liger`, `model.fused_ce: liger`, what
`auto` picks on a GPU) under FSDP2 on 2 processes logs the losses of the eager model trained on
one process. Without CUDA the kernels run under Triton's CPU interpreter, through
`tests/kernels/liger/interpreter.py` (`slm` with the interpreter's gaps closed)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from model.kernels.optional import is_installed
from tests.fixtures.pretrain import assert_same_losses, metrics_losses, tiny_config

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not (is_installed("triton") and is_installed("liger_kernel")),
                                 reason="needs triton and liger-kernel (pip install 'slm-pretrain[test]')")]

INTERPRETED_SLM = Path(__file__).parents[1] / "kernels" / "liger" / "interpreter.py"


def test_liger_kernels_under_fsdp2_train_like_the_eager_model(pretrain_data, trained_run, tmp_path):
    run_dir = tmp_path / "liger"
    config = tiny_config(run_dir, pretrain_data, trainer={"strategy": "fsdp2", "devices": 2},
                         model={"fused_ops": "liger", "fused_ce": "liger"})
    proc = subprocess.run([sys.executable, str(INTERPRETED_SLM), "pretrain", "--config", str(config)],
                          capture_output=True, text=True, timeout=900,
                          env={**os.environ, "TRITON_INTERPRET": "1", "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-6000:]
    liger, eager = metrics_losses(run_dir), metrics_losses(trained_run)
    assert_same_losses(liger, eager, [1, 2, 3, 4], 1e-4)
    val_liger, val_eager = metrics_losses(run_dir, "val_loss"), metrics_losses(trained_run, "val_loss")
    assert abs(val_liger[4] - val_eager[4]) <= 1e-4
