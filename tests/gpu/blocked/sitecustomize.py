"""Makes the packages that the GPU image lacks unimportable, in this process and in every Python
subprocess that inherits PYTHONPATH: put this folder first on PYTHONPATH.

`SLM_BLOCK_IMPORTS` (comma-separated top-level names) overrides the default list, which is what the
GPU image is missing (see tests/gpu/suite.sh). Used by tests/gpu/test_gpu_collection.py.
"""

import importlib.abc
import os
import sys

DEFAULT = "zstandard,jsonargparse,liger_kernel,torchao,flash_attn,flash_attn_interface,xformers"
BLOCKED = frozenset(filter(None, os.environ.get("SLM_BLOCK_IMPORTS", DEFAULT).split(",")))


class _Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked: not on the GPU image)",
                                      name=name)
        return None


sys.meta_path.insert(0, _Blocker())
