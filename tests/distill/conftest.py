"""Distillation fixtures: the session's trained tiny run is the teacher (debug-100k, vocab
1024, trained at seq_len 32 on `pretrain_data`); its cache is built once per session."""

from __future__ import annotations

import pytest

SEQ_LEN, TOP_K = 32, 8


@pytest.fixture(autouse=True, scope="package")
def _one_thread():
    """The tiny teacher's matmuls run faster on one thread than on two cores other tests use."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def cache_job(teacher, data, **changes):
    from pretrain.distill.cache import CacheJob

    settings = {"teacher": str(teacher), "data": str(data), "top_k": TOP_K, "seq_len": SEQ_LEN,
                "batch_size": 4}
    return CacheJob(**{**settings, **changes})


@pytest.fixture(scope="session")
def teacher_cache(trained_run, pretrain_data, tmp_path_factory):
    """A complete cache of the trained run over `pretrain_data`'s train split (1 worker,
    1 thread: more threads than idle cores make tiny matmuls 40× slower)."""
    from pretrain.distill.cache import build_cache

    output = tmp_path_factory.mktemp("teacher-cache") / "cache"
    build_cache(cache_job(trained_run, pretrain_data), output, workers=1, threads_per_worker=1)
    return output
