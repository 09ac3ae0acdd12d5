"""Fused attention backends compute `eager_attention`'s function: causal (bottom-right aligned),
grouped-query, and confined to documents when `document_ids` is given.

Tolerances: float32 on CPU within 1e-5; bf16 kernels on CUDA vs the float32 eager reference
within 2e-2 of the largest reference value (outputs) and 5e-2 (gradients; bf16 sums in a
different order).
"""

import subprocess
import sys

import pytest
import torch

from model import Llama, LlamaConfig, ModelError
from model.attention import eager_attention, select_backend
from model.kernels.attention_backends import REQUIREMENTS, check_backend
from model.kernels.documents import pack_documents
from model.kernels.optional import MissingKernelPackage, is_installed

FUSED_BACKENDS = list(REQUIREMENTS)
# On CPU FlexAttention runs uncompiled on purpose (a reference for inference); it warns so.
pytestmark = pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")


def qkv(batch=2, q_len=64, kv_len=64, heads=4, kv_heads=2, head_dim=16, dtype=torch.float32,
        device="cpu", requires_grad=False):
    generator = torch.Generator().manual_seed(0)
    shapes = [(batch, q_len, heads, head_dim), (batch, kv_len, kv_heads, head_dim),
              (batch, kv_len, kv_heads, head_dim)]
    return [torch.randn(s, generator=generator).to(device=device, dtype=dtype)
            .requires_grad_(requires_grad) for s in shapes]


def documents(batch=2, length=64, device="cpu"):
    """Row 0: documents of 10, 30, 24 tokens; row 1: 1, 63 (a one-token document too)."""
    ids = torch.empty(batch, length, dtype=torch.long)
    ids[0] = torch.repeat_interleave(torch.tensor([0, 1, 2]), torch.tensor([10, 30, 24]))
    ids[1] = torch.repeat_interleave(torch.tensor([3, 4]), torch.tensor([1, 63]))
    return ids.to(device)


def test_pack_documents_cuts_at_id_changes_and_row_boundaries():
    ids = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 2, 2]])  # id 1 spans the row boundary
    packed = pack_documents(ids)
    assert packed.cu_seqlens.tolist() == [0, 2, 5, 8, 10]
    assert packed.cu_seqlens.dtype == torch.int32
    assert packed.max_seqlen == 3


def test_pack_documents_is_computed_once_per_batch_and_again_after_an_in_place_change():
    ids = torch.tensor([[0, 0, 1, 1]])
    first = pack_documents(ids)
    assert pack_documents(ids) is first  # every layer of one forward shares the result
    ids[0, 1] = 1
    assert pack_documents(ids).cu_seqlens.tolist() == [0, 1, 4]
    assert pack_documents(ids.clone()).cu_seqlens.tolist() == [0, 1, 4]


def test_auto_is_sdpa_on_cpu():
    q, _, _ = qkv()
    assert select_backend("auto", q).__name__ == "sdpa_attention"


@pytest.mark.parametrize("with_documents", [False, True])
def test_flex_matches_eager_on_cpu_for_inference(with_documents):
    q, k, v = qkv()
    ids = documents() if with_documents else None
    want = eager_attention(q, k, v, ids)
    got = select_backend("flex", q)(q, k, v, ids)
    assert (got - want).abs().max().item() <= 1e-5


def test_flex_matches_eager_with_a_kv_cache_offset():
    q, k, v = qkv(q_len=16, kv_len=48)  # 16 new queries at positions 32..47
    want = eager_attention(q, k, v)
    got = select_backend("flex", q)(q, k, v)
    assert (got - want).abs().max().item() <= 1e-5


def test_model_with_flex_attention_and_documents_matches_eager_logits():
    config = LlamaConfig.from_name("debug-100k", attention_backend="eager")
    reference = Llama(config).eval()
    flex = Llama(config.replace(attention_backend="flex")).eval()
    flex.load_state_dict(reference.state_dict())
    input_ids = torch.randint(0, config.vocab_size, (2, 64))
    with torch.no_grad():
        want = reference(input_ids, documents())
        got = flex(input_ids, documents())
    assert (got - want).abs().max().item() <= 1e-4


def test_flex_cannot_train_on_cpu_and_says_so_up_front_and_in_the_forward():
    q, k, v = qkv(requires_grad=True)
    with pytest.raises(ModelError, match="'flex' has no backward on CPU"):
        check_backend("flex", q)
    with pytest.raises(ModelError, match="'flex' has no backward on CPU"):
        select_backend("flex", q)(q, k, v)


@pytest.mark.skipif(is_installed("flash_attn"), reason="flash-attn is installed here")
def test_missing_package_is_one_line_naming_the_cuda_extra():
    q, _, _ = qkv()
    with pytest.raises(MissingKernelPackage) as error:
        check_backend("flash_attn", q)
    message = str(error.value)
    assert "\n" not in message and "pip install 'slm-pretrain[cuda]'" in message
    assert isinstance(error.value, ModelError)  # the CLI prints it as `error: ...`, exit 2


def test_sdpa_cudnn_on_cpu_says_what_it_needs():
    q, _, _ = qkv()
    with pytest.raises(ModelError, match="'sdpa_cudnn' needs CUDA"):
        check_backend("sdpa_cudnn", q)


def test_importing_the_kernels_imports_no_optional_package():
    code = ("import sys, model.kernels; "
            "print([m for m in ('flash_attn', 'xformers', 'liger_kernel', 'torchao', "
            "'flash_attn_interface') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --- CUDA: every fused backend against the eager reference, forward and backward ------------

def _cuda_case(backend, dtype, q_len, kv_len, with_documents):
    q, k, v = qkv(q_len=q_len, kv_len=kv_len, head_dim=64, dtype=dtype, device="cuda",
                  requires_grad=True)
    try:
        fn = select_backend(backend, q)
    except ModelError as e:
        pytest.skip(str(e))
    ids = documents(device="cuda") if with_documents else None
    got = fn(q, k, v, ids)
    got.float().square().sum().backward()
    got_grads = [t.grad.float() for t in (q, k, v)]
    q32, k32, v32 = (t.detach().float().requires_grad_() for t in (q, k, v))
    want = eager_attention(q32, k32, v32, ids)
    want.square().sum().backward()
    return got.float(), want, got_grads, [t.grad for t in (q32, k32, v32)]


def _assert_close(got, want, tolerance):
    assert (got - want).abs().max().item() <= tolerance * want.abs().max().item()


@pytest.mark.gpu
@pytest.mark.parametrize("backend", FUSED_BACKENDS)
@pytest.mark.parametrize("with_documents", [False, True])
def test_cuda_backend_matches_eager_forward_and_backward(backend, with_documents):
    got, want, got_grads, want_grads = _cuda_case(backend, torch.bfloat16, 64, 64, with_documents)
    _assert_close(got, want, 2e-2)
    for got_grad, want_grad in zip(got_grads, want_grads):
        _assert_close(got_grad, want_grad, 5e-2)


@pytest.mark.gpu
@pytest.mark.parametrize("backend", FUSED_BACKENDS)
def test_cuda_backend_matches_eager_with_a_kv_cache_offset(backend):
    got, want, _, _ = _cuda_case(backend, torch.bfloat16, 16, 48, False)
    _assert_close(got, want, 2e-2)


@pytest.mark.gpu
def test_cuda_auto_prefers_a_fused_backend_over_plain_sdpa_for_bf16():
    q, _, _ = qkv(head_dim=64, dtype=torch.bfloat16, device="cuda")
    assert select_backend("auto", q).__name__ != "sdpa_attention"
