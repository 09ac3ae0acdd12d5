"""`data.prepare`: shards that hold exactly the tokenised corpus, however it is run."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

import data.prepare
import tokenizer
from data import DataError
from data.prepare import PROGRESS, prepare
from data.shards import read_manifest, sha256_file, verify_checksums
from tests.fixtures.data import PREPARED_SHARD_TOKENS
from tests.fixtures.tokenizer import TOKENIZER_VOCAB_SIZE


def _files(directory) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def _stream(directory, split="train"):
    """(all tokens of the split, document start positions in that stream)."""
    manifest = read_manifest(directory)
    tokens, starts, offset = [], [], 0
    for shard in manifest["splits"][split]["shards"]:
        tokens.append(np.fromfile(directory / shard["file"], dtype=np.uint16))
        starts.append(np.fromfile(directory / shard["index_file"], dtype=np.int64) + offset)
        offset += shard["tokens"]
    return np.concatenate(tokens), np.concatenate(starts)


def test_shards_hold_bos_ids_eos_per_document_in_corpus_order(corpus_files, trained_tokenizer,
                                                              tmp_path):
    prepare(corpus_files.paths, trained_tokenizer, tmp_path / "out", shard_tokens=5000,
            progress_bar=False)
    tok = tokenizer.load(trained_tokenizer)
    expected = [[tok.bos_id] + tok.encode(text) + [tok.eos_id]
                for text in corpus_files.all_documents]
    tokens, starts = _stream(tmp_path / "out")
    assert tokens.tolist() == [t for doc in expected for t in doc]
    assert starts.tolist() == np.cumsum([0] + [len(d) for d in expected[:-1]]).tolist()


def test_no_bos_leaves_ids_then_eos(corpus_files, trained_tokenizer, tmp_path):
    manifest = prepare(corpus_files.paths[:1], trained_tokenizer, tmp_path / "out",
                       bos=False, progress_bar=False)
    tok = tokenizer.load(trained_tokenizer)
    expected = [t for text in corpus_files.documents[corpus_files.paths[0]]
                for t in tok.encode(text) + [tok.eos_id]]
    assert _stream(tmp_path / "out")[0].tolist() == expected
    assert manifest["bos"] is False and manifest["eos"] is True


def test_shards_have_the_fixed_size_except_the_last_and_recorded_checksums(prepared_data):
    manifest = read_manifest(prepared_data)
    shards = manifest["splits"]["train"]["shards"]
    assert len(shards) > 2
    assert {s["tokens"] for s in shards[:-1]} == {PREPARED_SHARD_TOKENS}
    assert 0 < shards[-1]["tokens"] <= PREPARED_SHARD_TOKENS
    assert all(sha256_file(prepared_data / s["file"]) == s["sha256"] for s in shards)
    assert verify_checksums(prepared_data, manifest) == []
    assert manifest["dtype"] == "uint16" and manifest["tokenizer"]["vocab_size"] == TOKENIZER_VOCAB_SIZE


def test_per_input_stats_add_up_to_the_splits(prepared_data, corpus_files):
    manifest = read_manifest(prepared_data)
    inputs, splits = manifest["inputs"], manifest["splits"]
    assert [i["documents"] for i in inputs] == [len(corpus_files.documents[p])
                                                for p in corpus_files.paths]
    assert sum(i["tokens"] for i in inputs) == splits["train"]["tokens"] + splits["val"]["tokens"]
    assert sum(i["val_documents"] for i in inputs) == splits["val"]["documents"] > 0


def test_output_is_byte_identical_for_any_worker_count(corpus_files, trained_tokenizer,
                                                       tmp_path, monkeypatch):
    monkeypatch.setattr(data.prepare, "_CHUNK_DOCUMENTS", 16)  # many chunks in flight
    for workers in (1, 2):
        prepare(corpus_files.paths, trained_tokenizer, tmp_path / f"w{workers}",
                shard_tokens=7000, val_fraction=0.2, workers=workers, progress_bar=False)
    assert _files(tmp_path / "w1") == _files(tmp_path / "w2")


def test_val_fraction_holds_out_documents_by_text_hash(corpus_files, trained_tokenizer, tmp_path):
    prepare(corpus_files.paths, trained_tokenizer, tmp_path / "out", val_fraction=0.25,
            progress_bar=False)
    tok = tokenizer.load(trained_tokenizer)
    held_out = [text for text in corpus_files.all_documents
                if int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(),
                                  "little") / 2**64 < 0.25]
    expected = [t for text in held_out for t in [tok.bos_id] + tok.encode(text) + [tok.eos_id]]
    assert 40 < len(held_out) < 120
    assert _stream(tmp_path / "out", "val")[0].tolist() == expected


def test_val_docs_holds_out_the_first_documents(corpus_files, trained_tokenizer, tmp_path):
    manifest = prepare(corpus_files.paths, trained_tokenizer, tmp_path / "out", val_docs=5,
                       progress_bar=False)
    tok = tokenizer.load(trained_tokenizer)
    first = corpus_files.all_documents[:5]
    assert manifest["splits"]["val"]["documents"] == 5
    assert _stream(tmp_path / "out", "val")[0].tolist() == [
        t for text in first for t in [tok.bos_id] + tok.encode(text) + [tok.eos_id]]


def test_rerunning_a_finished_prepare_changes_nothing(prepared_data, corpus_files,
                                                      trained_tokenizer):
    before = _files(prepared_data)
    prepare(corpus_files.paths, trained_tokenizer, prepared_data,
            shard_tokens=PREPARED_SHARD_TOKENS, val_fraction=0.1, progress_bar=False)
    assert _files(prepared_data) == before


class _Interrupted(Exception):
    pass


@pytest.mark.parametrize("fail_at_input, after_documents", [(0, 3), (2, 40), (5, 0)])
def test_an_interrupted_prepare_resumes_to_the_same_bytes(corpus_files, trained_tokenizer,
                                                          tmp_path, monkeypatch,
                                                          fail_at_input, after_documents):
    settings = dict(shard_tokens=3000, val_fraction=0.1, progress_bar=False)
    prepare(corpus_files.paths, trained_tokenizer, tmp_path / "straight", **settings)
    monkeypatch.setattr(data.prepare, "_CHUNK_DOCUMENTS", 8)
    real_read, calls = data.prepare._read, []

    def failing_read(file, *args):
        calls.append(file)
        documents = real_read(file, *args)
        if len(calls) - 1 < fail_at_input:
            return documents

        def interrupted():
            for i, document in enumerate(documents):
                if i == after_documents:
                    raise _Interrupted
                yield document
            raise _Interrupted

        return interrupted()

    monkeypatch.setattr(data.prepare, "_read", failing_read)
    with pytest.raises(_Interrupted):
        prepare(corpus_files.paths, trained_tokenizer, tmp_path / "resumed", **settings)
    assert not (tmp_path / "resumed" / "manifest.json").exists()
    progress = json.loads((tmp_path / "resumed" / PROGRESS).read_text())
    assert len(progress["inputs_done"]) == fail_at_input
    monkeypatch.setattr(data.prepare, "_read", real_read)
    prepare(corpus_files.paths, trained_tokenizer, tmp_path / "resumed", **settings)
    assert _files(tmp_path / "resumed") == _files(tmp_path / "straight")


def test_a_different_tokenizer_is_refused_for_an_existing_output(prepared_data, corpus_files,
                                                                 tmp_path):
    other = tokenizer.train(corpus_files.paths, 700, tmp_path / "other")
    with pytest.raises(DataError, match="different tokenizer"):
        prepare(corpus_files.paths, other, prepared_data, shard_tokens=PREPARED_SHARD_TOKENS,
                val_fraction=0.1, progress_bar=False)


def test_overwrite_replaces_a_prepared_output(prepared_data, corpus_files, trained_tokenizer,
                                              tmp_path):
    output = tmp_path / "out"
    prepare(corpus_files.paths[:1], trained_tokenizer, output, progress_bar=False)
    manifest = prepare(corpus_files.paths[1:2], trained_tokenizer, output, overwrite=True,
                       progress_bar=False)
    assert [i["path"] for i in manifest["inputs"]] == [str(corpus_files.paths[1].resolve())]
    assert sorted(p.name for p in output.iterdir()) == [
        "manifest.json", "train-00000.bin", "train-00000.idx"]


def test_excluded_sets_are_dropped_and_counted(corpus_files, trained_tokenizer, tmp_path):
    manifest = prepare(corpus_files.paths[:2], trained_tokenizer, tmp_path / "out",
                       exclude_sets=["RedPajamaC4"], progress_bar=False)
    jsonl_documents = sum(len(corpus_files.documents[p]) for p in corpus_files.paths[:2])
    assert manifest["skipped"] == {"excluded set RedPajamaC4": jsonl_documents}
    assert manifest["splits"]["train"]["tokens"] == 0
