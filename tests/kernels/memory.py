"""Measure the memory that torch ops allocate on CPU, exactly, without a GPU.

`AllocationTracker` is a TorchDispatchMode that sees every tensor an op returns (forward and
backward), counts the bytes of each new storage while it is alive (a weakref finalizer
fires when the storage is freed: storages keep their Python object while alive) and records
the peak of the live total and the largest single tensor. Inputs created before the mode
are not counted: it measures what a computation adds.
"""

from __future__ import annotations

import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves


class AllocationTracker(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.live_bytes = 0
        self.peak_bytes = 0
        self.largest_numel = 0
        self._tracked: set[int] = set()

    def _free(self, key: int, nbytes: int) -> None:
        self._tracked.discard(key)
        self.live_bytes -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        # A view (or an in-place result) shares an input's storage: nothing new allocated.
        input_storages = {id(t.untyped_storage()) for t in tree_leaves((args, kwargs))
                          if isinstance(t, torch.Tensor)}
        for tensor in tree_leaves(out):
            if not isinstance(tensor, torch.Tensor):
                continue
            self.largest_numel = max(self.largest_numel, tensor.numel())
            storage = tensor.untyped_storage()
            key = id(storage)
            if key in self._tracked or key in input_storages:
                continue
            nbytes = storage.nbytes()
            self._tracked.add(key)
            self.live_bytes += nbytes
            self.peak_bytes = max(self.peak_bytes, self.live_bytes)
            weakref.finalize(storage, self._free, key, nbytes)
        return out
