"""The decoder: shapes, initialisation, meta-device materialisation, rotary offsets, GQA."""

import math

import pytest
import torch

from model import Llama, LlamaConfig, ModelError
from model.llama import KVCache, apply_rotary

TINY = LlamaConfig(vocab_size=97, dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=128,
                   max_seq_len=64, attention_backend="eager")


def tokens(batch=2, length=16, vocab=97):
    return torch.randint(0, vocab, (batch, length))


def test_forward_gives_logits_per_position():
    assert Llama(TINY)(tokens(3, 10)).shape == (3, 10, 97)


def test_forward_hidden_is_the_final_normed_state_fed_to_the_head():
    model, x = Llama(TINY), tokens()
    hidden = model.forward_hidden(x)
    assert hidden.shape == (2, 16, 64)
    torch.testing.assert_close(model.output(hidden), model(x))


def test_torchtitan_parameter_names():
    names = set(dict(Llama(TINY).named_parameters()))
    for name in ("tok_embeddings.weight", "layers.1.attention.wq.weight", "layers.1.attention.wo.weight",
                 "layers.0.feed_forward.w1.weight", "layers.0.feed_forward.w2.weight",
                 "layers.0.feed_forward.w3.weight", "layers.0.attention_norm.weight",
                 "layers.0.ffn_norm.weight", "norm.weight", "output.weight"):
        assert name in names


def test_tied_head_shares_the_embedding_and_untied_does_not():
    tied = Llama(TINY.replace(tie_embeddings=True))
    untied = Llama(TINY)
    assert tied.output.weight is tied.tok_embeddings.weight
    assert untied.output.weight is not untied.tok_embeddings.weight


def test_gqa_shapes_of_kv_projections():
    for n_kv_heads in (1, 2, 4):
        model = Llama(TINY.replace(n_kv_heads=n_kv_heads))
        assert model.layers[0].attention.wk.weight.shape == (n_kv_heads * 16, 64)
        assert model(tokens()).shape == (2, 16, 97)


def test_init_weights_uses_the_documented_stds():
    config = LlamaConfig(vocab_size=512, dim=256, n_layers=4, n_heads=4, n_kv_heads=4, ffn_dim=512,
                         max_seq_len=32)
    model = Llama(config)
    small, wang = math.sqrt(2 / (5 * 256)), 2 / (4 * math.sqrt(256))
    assert model.init_stds == pytest.approx((small, wang))
    for weight in (model.tok_embeddings.weight, model.output.weight, model.layers[0].attention.wq.weight,
                   model.layers[0].feed_forward.w1.weight):
        assert weight.std().item() == pytest.approx(small, rel=0.05)
    for weight in (model.layers[3].attention.wo.weight, model.layers[3].feed_forward.w2.weight):
        assert weight.std().item() == pytest.approx(wang, rel=0.05)
    assert torch.equal(model.norm.weight, torch.ones(256))


def test_tinyllama_init_stds_match_the_docstring():
    with torch.device("meta"):
        model = Llama(LlamaConfig.from_name("tinyllama-1.1b"))
    assert model.init_stds == pytest.approx((0.0139754, 0.0020088), rel=1e-4)


@pytest.mark.parametrize("tied", [False, True])
def test_meta_construction_then_to_empty_and_init_weights_gives_a_working_model(tied):
    config = TINY.replace(tie_embeddings=tied)
    with torch.device("meta"):
        model = Llama(config)
    assert model.tok_embeddings.weight.is_meta
    model.to_empty(device="cpu")
    model.init_weights()
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert (model.output.weight is model.tok_embeddings.weight) == tied
    reference = Llama(config)  # rotary tables were recomputed, not left as garbage
    torch.testing.assert_close(model.rope.cos, reference.rope.cos)
    torch.testing.assert_close(model.rope.sin, reference.rope.sin)
    assert torch.isfinite(model(tokens())).all()


def test_rotary_tables_stay_float32_when_the_model_is_cast_to_bf16():
    model = Llama(TINY).to(torch.bfloat16)
    assert model.rope.cos.dtype == torch.float32
    torch.testing.assert_close(model.rope.cos, Llama(TINY).rope.cos)
    assert model(tokens()).dtype == torch.bfloat16


def test_rotary_is_a_rotation_that_depends_only_on_relative_position():
    rope = Llama(TINY.replace(rope_theta=500.0)).rope
    q, k = torch.randn(1, 1, 1, 16), torch.randn(1, 1, 1, 16)

    def score(q_pos, k_pos):
        return (apply_rotary(q, *rope(q_pos, 1)) * apply_rotary(k, *rope(k_pos, 1))).sum()

    torch.testing.assert_close(score(7, 3), score(40, 36))
    torch.testing.assert_close(apply_rotary(q, *rope(5, 1)).norm(), q.norm())


def test_forward_with_start_pos_and_cache_equals_full_forward():
    model, x = Llama(TINY.replace(rope_theta=333.0)).eval(), tokens(2, 20)
    full = model(x)
    cache = KVCache(TINY, batch_size=2, max_seq_len=20, device="cpu", dtype=torch.float32)
    first = model(x[:, :12], cache=cache, start_pos=0)
    rest = model(x[:, 12:], cache=cache, start_pos=12)  # a chunk of 8 at an offset, then 1-token steps
    torch.testing.assert_close(torch.cat([first, rest], dim=1), full, atol=1e-5, rtol=1e-5)


def test_one_token_at_a_time_with_cache_equals_full_forward():
    model, x = Llama(TINY.replace(attention_backend="sdpa")).eval(), tokens(1, 10)
    cache = KVCache(TINY, batch_size=1, max_seq_len=10, device="cpu", dtype=torch.float32)
    steps = [model(x[:, t:t + 1], cache=cache, start_pos=t) for t in range(10)]
    torch.testing.assert_close(torch.cat(steps, dim=1), model(x), atol=1e-5, rtol=1e-5)


def test_positions_past_max_seq_len_are_a_model_error():
    with pytest.raises(ModelError, match="exceed max_seq_len=64"):
        Llama(TINY)(tokens(1, 65))


def test_later_documents_are_unaffected_by_earlier_ones():
    model = Llama(TINY.replace(attention_backend="sdpa")).eval()
    x = tokens(1, 16)
    document_ids = torch.tensor([[0] * 6 + [1] * 10])
    changed = x.clone()
    changed[0, :6] = (x[0, :6] + 1) % 97  # rewrite document 0 only
    packed = model(x, document_ids)
    torch.testing.assert_close(model(changed, document_ids)[:, 6:], packed[:, 6:])
    assert not torch.allclose(model(changed)[:, 6:], model(x)[:, 6:])  # without the mask it leaks


def test_a_packed_document_gives_the_logits_it_would_give_alone():
    # Positions are not reset at document starts; rotary attention only sees relative positions.
    model = Llama(TINY.replace(attention_backend="sdpa")).eval()
    x = tokens(1, 16)
    packed = model(x, torch.tensor([[3] * 6 + [4] * 10]))
    torch.testing.assert_close(packed[:, 6:], model(x[:, 6:]), atol=1e-4, rtol=1e-4)


def test_document_masked_logits_agree_between_sdpa_and_eager():
    model = Llama(TINY.replace(attention_backend="sdpa")).eval()
    reference = Llama(TINY.replace(attention_backend="eager")).eval()
    reference.load_state_dict(model.state_dict())
    x, docs = tokens(2, 16), torch.tensor([[0] * 5 + [1] * 11, [0] * 9 + [2] * 7])
    torch.testing.assert_close(model(x, docs), reference(x, docs), atol=1e-5, rtol=1e-5)


@pytest.mark.gpu
def test_bf16_cuda_forward_agrees_between_eager_and_sdpa():
    x, docs = tokens(2, 64).cuda(), torch.tensor([[0] * 20 + [1] * 44, [0] * 64]).cuda()
    sdpa = Llama(TINY.replace(attention_backend="sdpa")).cuda().to(torch.bfloat16).eval()
    eager = Llama(TINY.replace(attention_backend="eager")).cuda().to(torch.bfloat16).eval()
    eager.load_state_dict(sdpa.state_dict())
    with torch.no_grad():
        for document_ids in (None, docs):
            torch.testing.assert_close(sdpa(x, document_ids).float(), eager(x, document_ids).float(),
                                       atol=2e-2, rtol=2e-2)
