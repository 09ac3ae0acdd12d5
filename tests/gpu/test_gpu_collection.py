"""`pytest -m gpu` as the GPU image runs it: without zstandard, jsonargparse, liger-kernel,
torchao, flash-attn and xformers (tests/gpu/blocked makes them unimportable in every process).
On this CPU every gpu test skips ("needs CUDA"); what this guards is that nothing in the suite
imports one of them where collection (or a conftest) would break."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
BLOCKED_DIR = Path(__file__).parent / "blocked"
MISSING_ON_GPU_IMAGE = ("zstandard", "jsonargparse", "liger_kernel", "torchao", "flash_attn", "xformers")


def blocked_env() -> dict:
    path = os.pathsep.join(filter(None, [str(BLOCKED_DIR), str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path}


def test_the_blocker_makes_the_gpu_images_missing_packages_unimportable():
    code = ("import importlib\n"
            f"for name in {MISSING_ON_GPU_IMAGE!r}:\n"
            "    try:\n        importlib.import_module(name)\n        print('imported', name)\n"
            "    except ModuleNotFoundError:\n        print('missing', name)\n")
    out = subprocess.run([sys.executable, "-c", code], env=blocked_env(), capture_output=True,
                         text=True, check=True, timeout=120).stdout.split("\n")
    assert [line for line in out if line] == [f"missing {name}" for name in MISSING_ON_GPU_IMAGE]


@pytest.mark.slow
def test_gpu_marked_tests_collect_and_skip_cleanly_without_the_packages_the_gpu_image_lacks():
    proc = subprocess.run([sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider",
                           str(ROOT / "tests")], cwd=ROOT, env=blocked_env(), capture_output=True,
                          text=True, timeout=900)
    output = proc.stdout + proc.stderr
    assert proc.returncode in (0, 5), output[-4000:]
    summary = output.strip().splitlines()[-1]
    assert "error" not in summary and "failed" not in summary, summary
    assert "passed" not in summary, summary  # no CUDA here: every gpu test skips
    skipped = int(re.search(r"(\d+) skipped", summary).group(1))
    assert skipped >= 20, summary  # the gpu tests of model/, kernels/ and pretrain/
