"""tokenizer.load / Tokenizer: one type for our DIR, a bare .model and an HF Llama dir;
lossless round trips with byte fallback; batch encoding equals single encoding."""

import hashlib
import json
import shutil

import pytest

import tokenizer
from tests.fixtures.tokenizer import TOKENIZER_VOCAB_SIZE
from tests.tokenizer.texts import TRICKY_TEXTS
from tokenizer import Tokenizer, TokenizerError


@pytest.fixture(scope="module")
def tok(trained_tokenizer):
    return tokenizer.load(trained_tokenizer)


def test_ids_and_sizes_follow_the_llama_layout(tok):
    assert (tok.unk_id, tok.bos_id, tok.eos_id, tok.pad_id) == (0, 1, 2, None)
    assert tok.vocab_size == TOKENIZER_VOCAB_SIZE
    assert tok.special_tokens == {"<|sep|>": 3}
    assert [tok.id_to_piece(i) for i in (0, 1, 2, 4, 259)] == [
        "<unk>", "<s>", "</s>", "<0x00>", "<0xFF>"]


@pytest.mark.parametrize("text", TRICKY_TEXTS)
def test_decode_inverts_encode_and_nothing_is_unk(tok, text):
    ids = tok.encode(text)
    assert tok.unk_id not in ids
    assert tok.decode(ids) == text


def test_characters_missing_from_the_vocab_fall_back_to_utf8_bytes(tok):
    ids = tok.encode("ꙮ")  # U+A66E, not in the tiny training corpus
    assert [tok.id_to_piece(i) for i in ids] == ["<0xEA>", "<0x99>", "<0xAE>"]


def test_digits_are_split_and_whitespace_kept(tok):
    pieces = [tok.id_to_piece(i) for i in tok.encode("x 2026")]
    assert pieces[-4:] == ["2", "0", "2", "6"]
    assert "".join(tok.id_to_piece(i) for i in tok.encode("a\t  b")).count("▁") == 2


def test_bos_and_eos_are_added_only_when_asked(tok):
    plain = tok.encode("Hello world")
    assert tok.encode("Hello world", bos=True) == [1, *plain]
    assert tok.encode("Hello world", eos=True) == [*plain, 2]
    assert tok.encode("", bos=True, eos=True) == [1, 2]


def test_special_tokens_are_never_read_from_text(tok):
    assert 3 not in tok.encode("a <|sep|> b") and 1 not in tok.encode("<s>")


def test_encode_batch_equals_encode_per_text(tok, corpus_files):
    texts = TRICKY_TEXTS + corpus_files.all_documents
    assert tok.encode_batch(texts, bos=True, eos=True) == [
        tok.encode(t, bos=True, eos=True) for t in texts]
    assert tok.encode_batch([]) == []


def test_fingerprint_is_the_sha256_of_the_model_file_and_in_the_meta(tok, trained_tokenizer):
    model_bytes = (trained_tokenizer / "tokenizer.model").read_bytes()
    assert tok.fingerprint == hashlib.sha256(model_bytes).hexdigest()
    meta = json.loads((trained_tokenizer / "tokenizer_meta.json").read_text())
    assert meta["fingerprint"] == tok.fingerprint


def test_bare_model_file_and_hf_style_dir_load_the_same_tokenizer(tok, trained_tokenizer,
                                                                   tmp_path):
    bare = tokenizer.load(trained_tokenizer / "tokenizer.model")
    hf_dir = tmp_path / "TinyLlama-like"
    hf_dir.mkdir()
    shutil.copy(trained_tokenizer / "tokenizer.model", hf_dir)
    (hf_dir / "tokenizer_config.json").write_text('{"tokenizer_class": "LlamaTokenizer"}')
    from_hf = tokenizer.load(hf_dir)
    for other in (bare, from_hf):
        assert isinstance(other, Tokenizer)
        assert other.fingerprint == tok.fingerprint
        assert other.encode(TRICKY_TEXTS[-1]) == tok.encode(TRICKY_TEXTS[-1])


def test_missing_path_dir_without_model_and_corrupt_model_fail_naming_the_path(tmp_path):
    with pytest.raises(TokenizerError, match="no such tokenizer") as info:
        tokenizer.load(tmp_path / "absent")
    assert str(tmp_path / "absent") in str(info.value)
    with pytest.raises(TokenizerError, match="no tokenizer.model"):
        tokenizer.load(tmp_path)
    corrupt = tmp_path / "tokenizer.model"
    corrupt.write_bytes(b"\x00not a sentencepiece model\xff" * 10)
    with pytest.raises(TokenizerError, match="not a sentencepiece model") as info:
        tokenizer.load(tmp_path)
    assert str(corrupt) in str(info.value)


def test_truncated_model_file_is_a_tokenizer_error(trained_tokenizer, tmp_path):
    model_bytes = (trained_tokenizer / "tokenizer.model").read_bytes()
    (tmp_path / "cut.model").write_bytes(model_bytes[: len(model_bytes) // 3])
    with pytest.raises(TokenizerError, match="cut.model"):
        tokenizer.load(tmp_path / "cut.model")


def test_the_space_symbol_u2581_is_the_one_character_that_decodes_differently(tok):
    # sentencepiece writes spaces as "▁"; a literal "▁" in the text is read as a space.
    assert tok.encode("a▁b") == tok.encode("a b") and tok.decode(tok.encode("a▁b")) == "a b"


@pytest.mark.parametrize("text", TRICKY_TEXTS)
def test_token_bytes_sum_to_the_utf8_length_of_the_text(tok, text):
    table = tok.token_bytes()
    ids = tok.encode(text, bos=True, eos=True)
    assert sum(table[i] for i in ids) == len(text.encode("utf-8"))
    assert table[tok.bos_id] == table[tok.eos_id] == 0
