"""Tokenisation as lm-evaluation-harness's hf backend."""

from __future__ import annotations

import pytest

import tokenizer as tok
from pretrain.errors import PretrainError
from pretrain.eval.items import shared_context_item
from pretrain.eval.requests import encode_pair, item_requests


@pytest.fixture(scope="module")
def tokenizer(trained_tokenizer):
    return tok.load(trained_tokenizer)


def test_context_and_continuation_are_encoded_together_and_split_at_the_context(tokenizer):
    context_ids, continuation_ids, _ = encode_pair(tokenizer, "The river", " ran past the mill")
    assert context_ids == tokenizer.encode("The river")
    assert context_ids + continuation_ids == tokenizer.encode("The river ran past the mill")


def test_trailing_spaces_of_the_context_move_to_the_continuation(tokenizer):
    context_ids, continuation_ids, scored = encode_pair(tokenizer, "Answer:  ", "yes")
    assert context_ids == tokenizer.encode("Answer:")
    assert scored == "  yes"
    assert context_ids + continuation_ids == tokenizer.encode("Answer:  yes")


def test_bos_is_prepended_only_when_asked(tokenizer):
    assert encode_pair(tokenizer, "a b", " c")[0][0] != tokenizer.bos_id
    assert encode_pair(tokenizer, "a b", " c", bos=True)[0] == [tokenizer.bos_id] + tokenizer.encode("a b")


def test_bos_is_not_added_before_a_context_that_starts_with_its_text(tokenizer):
    # lm-eval's tok_encode skips BOS when the text starts with decode(BOS) = "<s>"
    context_ids, continuation_ids, _ = encode_pair(tokenizer, "<s> a b", " c", bos=True)
    assert context_ids == tokenizer.encode("<s> a b")
    assert context_ids + continuation_ids == tokenizer.encode("<s> a b c")


@pytest.mark.parametrize("bos", [False, True])
def test_empty_context_is_scored_after_the_bos_token_whatever_bos(tokenizer, bos):
    context_ids, continuation_ids, _ = encode_pair(tokenizer, "", "hello world", bos=bos)
    assert context_ids == [tokenizer.bos_id]
    assert continuation_ids == tokenizer.encode("hello world")


def test_overlong_context_is_cut_from_the_left_to_the_model_positions(tokenizer):
    context = " ".join(["river"] * 50)
    item = shared_context_item(0, context, [" mill"], 0)
    (request,) = item_requests(item, tokenizer, max_seq_len=16)
    full = tokenizer.encode(context + " mill")
    assert request.truncated and len(request.tokens) == 17
    assert list(request.tokens) == full[-17:]


def test_continuation_longer_than_the_model_positions_is_an_error(tokenizer):
    item = shared_context_item(3, "q", [" " + " ".join(["word"] * 40)], 0)
    with pytest.raises(PretrainError, match="choice 0 of item 3 is .* more than the model's 8 positions"):
        item_requests(item, tokenizer, max_seq_len=8, where="f.jsonl")
