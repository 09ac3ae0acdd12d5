"""Generation with a KV cache: greedy equals recomputation, sampling filters, eos, seeds."""

import pytest
import torch

from model import Llama, LlamaConfig, ModelError
from model.generate import generate, sample_next

CONFIG = LlamaConfig(vocab_size=61, dim=64, n_layers=2, n_heads=4, n_kv_heads=1, ffn_dim=128,
                     max_seq_len=48, rope_theta=1000.0)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(1)
    model = Llama(CONFIG).eval()
    with torch.no_grad():  # larger weights than the init: peaked, prompt-dependent predictions
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.2)
    return model


def greedy_without_cache(model, prompt, n):
    tokens = prompt
    for _ in range(n):
        with torch.no_grad():
            tokens = torch.cat([tokens, model(tokens)[:, -1].argmax(-1, keepdim=True)], dim=1)
    return tokens


def test_greedy_with_cache_equals_recomputing_the_whole_sequence(model):
    prompt = torch.randint(0, 61, (3, 7))
    expected = greedy_without_cache(model, prompt, 25)
    assert torch.equal(generate(model, prompt, 25, temperature=0), expected)
    assert len(set(expected[0, 7:].tolist())) > 1  # not a degenerate constant continuation


def test_top_k_1_is_greedy(model):
    prompt = torch.randint(0, 61, (2, 5))
    assert torch.equal(generate(model, prompt, 10, top_k=1), generate(model, prompt, 10, temperature=0))


def test_a_1d_prompt_gives_a_1d_result_starting_with_the_prompt(model):
    prompt = torch.tensor([3, 1, 4, 1, 5])
    out = generate(model, prompt, 6, temperature=0)
    assert out.shape == (11,) and torch.equal(out[:5], prompt)


def test_sampling_is_reproducible_with_a_seeded_generator(model):
    prompt = torch.randint(0, 61, (2, 4))
    runs = [generate(model, prompt, 20, temperature=1.0, generator=torch.Generator().manual_seed(s))
            for s in (7, 7, 8)]
    assert torch.equal(runs[0], runs[1])
    assert not torch.equal(runs[0], runs[2])


def first_index(row, token, start):
    hits = (row[start:] == token).nonzero()
    return int(hits[0]) + start if len(hits) else None


def test_eos_ends_a_sequence_right_after_it_is_produced(model):
    prompt = torch.randint(0, 61, (1, 4))
    greedy = generate(model, prompt, 20, temperature=0)
    eos = int(greedy[0, 6])
    end = first_index(greedy[0], eos, start=4)
    assert torch.equal(generate(model, prompt, 20, temperature=0, eos_id=eos)[0], greedy[0, :end + 1])


def test_finished_sequences_are_padded_with_eos_while_others_continue(model):
    prompt = torch.randint(0, 61, (2, 4))
    greedy = generate(model, prompt, 20, temperature=0)
    eos = int(greedy[0, 6])
    out = generate(model, prompt, 20, temperature=0, eos_id=eos)
    for row, reference in zip(out, greedy):
        end = first_index(reference, eos, start=4)
        end = len(out[0]) if end is None else end + 1
        assert torch.equal(row[:end], reference[:end]) and (row[end:] == eos).all()
    ends = [first_index(r, eos, start=4) for r in greedy]
    assert out.shape[1] == (24 if None in ends else max(ends) + 1)


def test_top_k_samples_only_among_the_k_most_likely():
    logits = torch.tensor([[0.0, 5.0, 4.0, 3.0, -1.0]]).repeat(500, 1)
    picks = sample_next(logits, temperature=2.0, top_k=2, generator=torch.Generator().manual_seed(0))
    assert set(picks.tolist()) == {1, 2}


def test_top_p_keeps_the_smallest_set_reaching_p():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]]).repeat(500, 1)
    picks = sample_next(probs.log(), top_p=0.75, generator=torch.Generator().manual_seed(0))
    assert set(picks.tolist()) == {0, 1}  # 0.5 < 0.75 <= 0.5 + 0.3
    only_top = sample_next(probs.log(), top_p=0.1, generator=torch.Generator().manual_seed(0))
    assert set(only_top.tolist()) == {0}


def test_generating_past_max_seq_len_is_a_model_error(model):
    with pytest.raises(ModelError, match="exceeds the model's max_seq_len 48"):
        generate(model, torch.zeros(1, 40, dtype=torch.long), 9)


def test_bad_sampling_arguments_are_model_errors(model):
    with pytest.raises(ModelError, match="0 < top_p <= 1"):
        generate(model, torch.zeros(1, 4, dtype=torch.long), 2, top_p=1.5)
