"""tokenizer.train: a reproducible, bounded-memory sample; a complete output directory or none;
user mistakes found before any work is written."""

import json
from pathlib import Path

import pytest

import tokenizer
from tests.fixtures.tokenizer import varied_documents, write_corpus
from tokenizer import TokenizerError
from tokenizer.corpus import CorpusError
from tokenizer.train import MAX_SENTENCE_BYTES, document_sentences, reservoir_sample

VOCAB = 600  # room for the ~200 distinct characters; trains in milliseconds


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("small"), varied_documents(60, seed=1))


def test_output_holds_the_model_the_hf_files_and_the_meta(trained_tokenizer):
    names = sorted(p.name for p in trained_tokenizer.iterdir())
    assert names == ["special_tokens_map.json", "tokenizer.json", "tokenizer.model",
                     "tokenizer_config.json", "tokenizer_meta.json"]
    assert not list(trained_tokenizer.parent.glob(".*tmp*"))


def test_meta_records_ids_inputs_sample_and_settings(trained_tokenizer, corpus_files):
    meta = json.loads((trained_tokenizer / "tokenizer_meta.json").read_text())
    assert (meta["vocab_size"], meta["unk_id"], meta["bos_id"], meta["eos_id"]) == (
        1024, 0, 1, 2)
    assert meta["pad_id"] is None and meta["special_tokens"] == {"<|sep|>": 3}
    assert [i["path"] for i in meta["inputs"]] == [str(p) for p in corpus_files.paths]
    assert [i["documents"] for i in meta["inputs"]] == [
        len(corpus_files.documents[p]) for p in corpus_files.paths]
    assert [i["bytes"] for i in meta["inputs"]] == [p.stat().st_size for p in corpus_files.paths]
    assert meta["sentences_sampled"] == meta["sentences_seen"] > 1000
    options = meta["settings"]["sentencepiece"]
    assert options["normalization_rule_name"] == "identity"
    assert options["byte_fallback"] and options["split_digits"]
    assert not options["add_dummy_prefix"] and not options["remove_extra_whitespaces"]
    assert meta["skipped"] == {} and meta["hf_files"] == [
        "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]


def test_same_inputs_and_seed_give_the_same_model(small_corpus, tmp_path):
    first = tokenizer.train(small_corpus.paths, VOCAB, tmp_path / "a", max_sentences=100, seed=3)
    second = tokenizer.train(small_corpus.paths, VOCAB, tmp_path / "b", max_sentences=100,
                             seed=3)
    assert (first / "tokenizer.model").read_bytes() == (second / "tokenizer.model").read_bytes()


def test_max_sentences_bounds_the_sample(small_corpus, tmp_path):
    out = tokenizer.train(small_corpus.paths, VOCAB, tmp_path / "t", max_sentences=50, seed=0)
    meta = json.loads((out / "tokenizer_meta.json").read_text())
    assert meta["sentences_sampled"] == 50 < meta["sentences_seen"]


def test_reservoir_sample_is_uniform_reproducible_and_seeded():
    sample, seen = reservoir_sample(map(str, range(10_000)), 1000, seed=0)
    assert seen == 10_000 and len(set(sample)) == 1000
    assert reservoir_sample(map(str, range(10_000)), 1000, seed=0)[0] == sample
    assert reservoir_sample(map(str, range(10_000)), 1000, seed=1)[0] != sample
    late = sum(int(s) >= 5000 for s in sample)
    assert 400 < late < 600  # about half the sample comes from the second half
    assert reservoir_sample(["a", "b"], 5, seed=0) == (["a", "b"], 2)


def test_training_sentences_are_nonempty_lines_and_long_lines_are_cut():
    assert list(document_sentences("a\n\n b\t\n")) == ["a", " b\t"]
    long_line = "é" * MAX_SENTENCE_BYTES  # 2 bytes per character
    chunks = list(document_sentences(long_line))
    assert "".join(chunks) == long_line
    assert all(len(c.encode()) <= MAX_SENTENCE_BYTES for c in chunks) and len(chunks) == 2


def test_special_tokens_get_ids_from_3_in_order_and_pad_gives_a_pad_id(small_corpus, tmp_path):
    out = tokenizer.train(small_corpus.paths, VOCAB, tmp_path / "t",
                          special_tokens=["<|endoftext|>", "<pad>"])
    tok = tokenizer.load(out)
    assert tok.special_tokens == {"<|endoftext|>": 3, "<pad>": 4} and tok.pad_id == 4
    meta = json.loads((out / "tokenizer_meta.json").read_text())
    assert meta["special_tokens"] == tok.special_tokens and meta["pad_id"] == 4


@pytest.mark.parametrize("vocab_size, specials", [(259, ()), (261, ("<a>", "<b>"))])
def test_vocab_too_small_for_bytes_and_specials_fails_before_reading(tmp_path, vocab_size,
                                                                      specials):
    with pytest.raises(TokenizerError, match="too small.*--vocab-size"):
        tokenizer.train([tmp_path / "never-read.jsonl"], vocab_size, tmp_path / "out",
                        special_tokens=specials)
    assert not (tmp_path / "out").exists()


def test_vocab_larger_than_the_corpus_supports_is_a_user_error(small_corpus, tmp_path):
    with pytest.raises(TokenizerError, match="cannot train a vocab of 60000"):
        tokenizer.train(small_corpus.paths, 60_000, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("token", ["", "two words", "<s>"])
def test_bad_special_token_is_rejected(tmp_path, token):
    with pytest.raises(TokenizerError, match="--special-token"):
        tokenizer.train([tmp_path], VOCAB, tmp_path / "out", special_tokens=[token])


def test_non_empty_output_needs_overwrite_and_is_then_replaced(small_corpus, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("keep me")
    with pytest.raises(TokenizerError, match="--overwrite"):
        tokenizer.train(small_corpus.paths, VOCAB, out)
    assert (out / "old.txt").read_text() == "keep me"
    tokenizer.train(small_corpus.paths, VOCAB, out, overwrite=True)
    assert not (out / "old.txt").exists() and (out / "tokenizer.model").is_file()


def test_a_bad_record_leaves_no_output_and_no_temp_dir(small_corpus, tmp_path):
    bad = tmp_path / "in" / "bad.jsonl"
    bad.parent.mkdir()
    bad.write_text('{"text": "fine"}\n{"text": "fine"}\nnot json\n')
    with pytest.raises(CorpusError, match=f"not JSON .*{bad}:3"):
        tokenizer.train([*small_corpus.paths, bad], VOCAB, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]


def test_skip_bad_lines_records_counts_per_file_and_in_total(small_corpus, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\nnot json\n{"body": 1}\nnot json either\n')
    out = tokenizer.train([*small_corpus.paths, bad], VOCAB, tmp_path / "out",
                          skip_bad_lines=True)
    meta = json.loads((out / "tokenizer_meta.json").read_text())
    assert meta["skipped"] == {"missing key 'text'": 1, "not JSON": 2}
    by_path = {Path(i["path"]).name: i for i in meta["inputs"]}
    assert by_path["bad.jsonl"]["documents"] == 1
    assert by_path["bad.jsonl"]["skipped"] == meta["skipped"]


def test_without_tokenizers_only_the_sentencepiece_files_are_written(small_corpus, tmp_path,
                                                                      monkeypatch, caplog):
    monkeypatch.setitem(__import__("sys").modules, "tokenizers", None)
    out = tokenizer.train(small_corpus.paths, VOCAB, tmp_path / "out")
    assert sorted(p.name for p in out.iterdir()) == ["tokenizer.model", "tokenizer_meta.json"]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "tokenizer.json" in warnings[0] and "[hf]" in warnings[0]
    assert json.loads((out / "tokenizer_meta.json").read_text())["hf_files"] == []
