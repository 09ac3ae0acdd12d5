"""The attention seam: every backend computes the same causal, grouped, document-masked function."""

import subprocess
import sys

import pytest
import torch

from model import Llama, LlamaConfig, ModelError
from model import attention
from model.attention import (attention_mask, backend_names, eager_attention, register_backend,
                             sdpa_attention, select_backend)


def qkv(batch=2, q_len=12, kv_len=12, n_heads=8, n_kv_heads=2, head_dim=16):
    return (torch.randn(batch, q_len, n_heads, head_dim), torch.randn(batch, kv_len, n_kv_heads, head_dim),
            torch.randn(batch, kv_len, n_kv_heads, head_dim))


@pytest.fixture
def registry():
    """Restore the backend registry after a test registers its own."""
    saved = dict(attention._BACKENDS)
    yield
    attention._BACKENDS.clear()
    attention._BACKENDS.update(saved)
    attention._SELECTED.clear()


def naive_attention(q, k, v, document_ids=None):
    """Loop-per-query reference written independently of the mask helper."""
    B, T, H, D = q.shape
    S, n_rep = k.shape[1], H // k.shape[2]
    out = torch.zeros_like(q)
    for b in range(B):
        for h in range(H):
            for t in range(T):
                pos = S - T + t
                keys = [j for j in range(pos + 1)
                        if document_ids is None or document_ids[b, j] == document_ids[b, pos]]
                scores = torch.stack([q[b, t, h] @ k[b, j, h // n_rep] for j in keys]) / D ** 0.5
                out[b, t, h] = scores.softmax(0) @ v[b, keys, h // n_rep]
    return out


@pytest.mark.parametrize("n_kv_heads", [1, 2, 4, 8])
def test_eager_matches_a_naive_loop_for_every_gqa_ratio(n_kv_heads):
    q, k, v = qkv(batch=1, q_len=6, kv_len=6, n_kv_heads=n_kv_heads)
    torch.testing.assert_close(eager_attention(q, k, v), naive_attention(q, k, v), atol=1e-5, rtol=1e-5)


def test_eager_with_documents_and_a_cache_offset_matches_a_naive_loop():
    q, k, v = qkv(batch=2, q_len=4, kv_len=10)
    docs = torch.tensor([[0, 0, 0, 1, 1, 1, 1, 2, 2, 2], [5, 5, 5, 5, 5, 5, 6, 6, 6, 6]])
    torch.testing.assert_close(eager_attention(q, k, v, docs), naive_attention(q, k, v, docs),
                               atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("q_len, kv_len", [(12, 12), (1, 12), (5, 12)])
@pytest.mark.parametrize("n_kv_heads", [1, 2, 8])
def test_sdpa_matches_eager(q_len, kv_len, n_kv_heads):
    q, k, v = qkv(q_len=q_len, kv_len=kv_len, n_kv_heads=n_kv_heads)
    torch.testing.assert_close(sdpa_attention(q, k, v), eager_attention(q, k, v), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("q_len", [12, 1, 5])
def test_sdpa_matches_eager_with_document_masks(q_len):
    q, k, v = qkv(q_len=q_len, kv_len=12)
    docs = torch.tensor([[0] * 5 + [1] * 4 + [2] * 3, [7] * 12])
    torch.testing.assert_close(sdpa_attention(q, k, v, docs), eager_attention(q, k, v, docs),
                               atol=1e-5, rtol=1e-5)


def test_mask_is_causal_bottom_right_and_block_diagonal():
    docs = torch.tensor([[0, 0, 1, 1]])
    mask = attention_mask(2, docs, 4, torch.device("cpu"))[0, 0]
    assert mask.tolist() == [[False, False, True, False], [False, False, True, True]]


def test_auto_picks_the_available_backend_of_highest_priority(registry):
    q = torch.randn(1, 2, 2, 4)
    marker = lambda q, k, v, document_ids=None: q  # noqa: E731
    register_backend("fast_but_absent", marker, available=lambda q: False, priority=100)
    assert select_backend("auto", q) is sdpa_attention
    register_backend("fast", marker, available=lambda q: q.dtype == torch.float32, priority=50)
    assert select_backend("auto", q) is marker
    assert select_backend("auto", q.double()) is sdpa_attention
    assert backend_names()[:2] == ["fast_but_absent", "fast"]


def test_a_registered_backend_runs_inside_the_model_without_touching_it(registry):
    calls = []

    def counting(q, k, v, document_ids=None):
        calls.append(q.shape)
        return eager_attention(q, k, v, document_ids)

    register_backend("counting", counting)
    config = LlamaConfig.from_name("debug-100k", attention_backend="counting")
    Llama(config)(torch.randint(0, 512, (1, 8)))
    assert calls == [(1, 8, 4, 16)] * 2


def test_unknown_backend_names_the_known_ones():
    with pytest.raises(ModelError, match=r"unknown attention backend 'flash' \(known: auto, ") as info:
        select_backend("flash", torch.randn(1, 1, 1, 2))
    assert {"sdpa", "eager"} <= set(str(info.value).split("known: ")[1].rstrip(")").split(", "))


def test_unavailable_backend_is_a_model_error(registry):
    register_backend("cuda_only", eager_attention, available=lambda q: q.is_cuda)
    with pytest.raises(ModelError, match="'cuda_only' is not available for cpu/torch.float32"):
        select_backend("cuda_only", torch.randn(1, 1, 1, 2))


def test_importing_the_model_imports_no_kernel_module():
    code = ("import sys, model.llama; "
            "print(sorted(m for m in sys.modules if m.startswith('model.kernels')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_model_built_on_meta_binds_its_kernel_when_materialised():
    with torch.device("meta"):
        model = Llama(LlamaConfig.from_name("debug-100k", attention_backend="auto"))
    assert model.layers[0].attention.kernels == {}
    model.to_empty(device="cpu")
    kernels = model.layers[0].attention.kernels
    assert {kernels[("cpu", dtype)] for dtype in attention.COMPUTE_DTYPES} == {sdpa_attention}


@pytest.mark.parametrize("backend", ["auto", "eager"])
def test_a_fullgraph_compiled_block_calls_the_bound_kernel_and_matches_eager(backend, monkeypatch):
    config = LlamaConfig.from_name("debug-100k", attention_backend=backend)
    model = Llama(config)
    block = model.layers[0]
    rope = model.rope(0, 16)
    docs = torch.tensor([[0] * 6 + [1] * 10, [2] * 16])
    x = torch.randn(2, 16, config.dim, requires_grad=True)

    want = block(x, rope, docs)
    want.square().sum().backward()
    want_grads = [x.grad.clone()] + [p.grad.clone() for p in block.parameters()]
    x.grad = None
    block.zero_grad()

    def no_choosing(name, q):
        raise AssertionError("the backend was chosen inside the forward")

    monkeypatch.setattr("model.llama.select_backend", no_choosing)
    torch._dynamo.reset()
    compiled = torch.compile(block, fullgraph=True, backend="aot_eager")
    got = compiled(x, rope, docs)
    got.square().sum().backward()
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    for got_grad, want_grad in zip([x.grad] + [p.grad for p in block.parameters()], want_grads):
        torch.testing.assert_close(got_grad, want_grad, atol=1e-5, rtol=1e-5)
