import os
import subprocess
import sys

import pytest
import torch

# Tests never reach the network: the Hub stays offline.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Session fixtures shared across folders, one module per area.
pytest_plugins = ["tests.fixtures.tokenizer", "tests.fixtures.data", "tests.fixtures.pretrain"]


@pytest.fixture(autouse=True)
def _seeded_torch():
    torch.manual_seed(0)


@pytest.fixture
def slm():
    """Run `slm ARGS...` as a real subprocess; returns the CompletedProcess (text mode)."""

    def run(*args, cwd=None, env=None, timeout=600, check=False):
        proc = subprocess.run(
            [sys.executable, "-m", "pretrain.cli", *map(str, args)],
            cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"slm {' '.join(map(str, args))} failed ({proc.returncode}):\n"
                                 f"{proc.stdout}\n{proc.stderr}")
        return proc

    return run


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if item.get_closest_marker("gpu") is not None:  # not keywords: tests/gpu/ runs on CPUs
            item.add_marker(skip)
