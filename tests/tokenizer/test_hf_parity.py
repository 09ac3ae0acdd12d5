"""The exported directory loads with transformers.AutoTokenizer and agrees with our tokenizer
id for id and character for character."""

import json

import pytest

import tokenizer
from tests.tokenizer.texts import TRICKY_TEXTS

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def both(trained_tokenizer):
    return (tokenizer.load(trained_tokenizer),
            transformers.AutoTokenizer.from_pretrained(str(trained_tokenizer)))


def test_auto_tokenizer_loads_a_llama_tokenizer_with_our_specials(both):
    ours, hf = both
    assert type(hf).__name__ in ("LlamaTokenizer", "LlamaTokenizerFast")
    assert (hf.unk_token_id, hf.bos_token_id, hf.eos_token_id) == (0, 1, 2)
    assert hf.pad_token_id is None and hf.convert_tokens_to_ids("<|sep|>") == 3
    assert len(hf) == ours.vocab_size


@pytest.mark.parametrize("text", TRICKY_TEXTS)
def test_ids_equal_ours_with_bos_as_hf_adds_it(both, text):
    ours, hf = both
    assert hf(text)["input_ids"] == ours.encode(text, bos=True)
    assert hf.encode(text, add_special_tokens=False) == ours.encode(text)


@pytest.mark.parametrize("text", TRICKY_TEXTS)
def test_hf_decode_equals_ours_and_the_text(both, text):
    ours, hf = both
    ids = ours.encode(text, bos=True, eos=True)
    assert hf.decode(ids, skip_special_tokens=True) == ours.decode(ids) == text


def test_ids_equal_ours_on_every_corpus_document(both, corpus_files):
    ours, hf = both
    documents = corpus_files.all_documents
    assert hf(documents)["input_ids"] == ours.encode_batch(documents, bos=True)


def test_special_token_ids_decode_to_their_text_in_hf_only_when_not_skipped(both):
    ours, hf = both
    ids = [3] + ours.encode("x")
    assert hf.decode(ids) == "<|sep|>x" and hf.decode(ids, skip_special_tokens=True) == "x"
    assert ours.decode(ids) == "x"


def test_tokenizer_config_says_llama_bos_not_eos_no_prefix_space(trained_tokenizer):
    config = json.loads((trained_tokenizer / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "LlamaTokenizer"
    assert (config["add_bos_token"], config["add_eos_token"]) == (True, False)
    assert (config["add_prefix_space"], config["split_special_tokens"]) == (False, True)
    specials = json.loads((trained_tokenizer / "special_tokens_map.json").read_text())
    assert specials == {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
                        "additional_special_tokens": ["<|sep|>"]}


def test_bpe_merges_reproduce_transformers_generate_merges(trained_tokenizer):
    import sentencepiece
    from transformers.tokenization_utils_base import generate_merges

    from tokenizer.hf import bpe_merges

    sp = sentencepiece.SentencePieceProcessor(model_file=str(trained_tokenizer /
                                                             "tokenizer.model"))
    vocab = {sp.id_to_piece(i): i for i in range(sp.get_piece_size())}
    skip = {sp.id_to_piece(i) for i in range(sp.get_piece_size())
            if sp.is_control(i) or sp.is_unknown(i) or sp.is_byte(i)}
    assert bpe_merges(vocab, skip) == generate_merges(vocab, skip_tokens=skip)
