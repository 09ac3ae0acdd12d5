"""`slm data prepare | inspect | bench` as real subprocesses; every bad input is one error line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pyarrow
import pyarrow.parquet as pq
import pytest

from data.prepare import prepare
from data.shards import read_manifest
from tests.fixtures.tokenizer import varied_documents
from tests.user_errors import assert_user_error


def _jsonl(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def _good_lines(count=5, seed=1):
    return [json.dumps({"text": text}) for text in varied_documents(count, seed=seed)]


def _prepare(slm, tokenizer_dir, output, *inputs, extra=()):
    return slm("data", "prepare", "--input", *inputs, "--tokenizer", tokenizer_dir,
               "--output", output, *extra)


def test_prepare_then_inspect_reports_totals_sample_and_checksums(slm, prepared_data):
    proc = slm("data", "inspect", prepared_data, "--verify", check=True)
    manifest = read_manifest(prepared_data)
    assert f"{manifest['splits']['train']['tokens']:,}" in proc.stdout
    assert "sample (train-00000.bin" in proc.stdout
    assert "checksums: all" in proc.stdout and "skipped records: none" in proc.stdout
    summary = json.loads(slm("data", "inspect", prepared_data, "--json", check=True).stdout)
    assert summary["splits"]["val"]["documents"] == manifest["splits"]["val"]["documents"]
    assert summary["sample"]["text"]


def test_inspect_verify_names_a_corrupted_shard(slm, corpus_files, trained_tokenizer, tmp_path):
    prepare(corpus_files.paths[:1], trained_tokenizer, tmp_path / "out", progress_bar=False)
    shard = tmp_path / "out" / "train-00000.bin"
    payload = bytearray(shard.read_bytes())
    payload[10] ^= 1
    shard.write_bytes(bytes(payload))
    assert_user_error(slm("data", "inspect", tmp_path / "out", "--verify"),
                      "sha256 mismatch", "train-00000.bin")


def test_inspect_of_a_directory_without_manifest_is_a_user_error(slm, tmp_path):
    assert_user_error(slm("data", "inspect", tmp_path), "no manifest.json", str(tmp_path))


@pytest.mark.parametrize("bad_line, reason", [
    ("{not json", "not JSON"),
    ('{"content": "no text here"}', "missing key 'text'"),
    ('{"text": ""}', "empty document"),
])
def test_a_bad_jsonl_record_is_one_error_line_naming_file_and_line(
        slm, trained_tokenizer, tmp_path, bad_line, reason):
    lines = _good_lines()
    lines.insert(2, bad_line)
    corpus = _jsonl(tmp_path / "bad.jsonl", lines)
    proc = _prepare(slm, trained_tokenizer, tmp_path / "out", corpus)
    assert_user_error(proc, reason, f"{corpus}:3")
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_skip_bad_lines_counts_each_reason_in_manifest_and_output(slm, trained_tokenizer,
                                                                  tmp_path):
    lines = _good_lines() + ["{not json", '{"text": ""}', "[1, 2]", '{"text": ""}']
    corpus = _jsonl(tmp_path / "bad.jsonl", lines)
    proc = _prepare(slm, trained_tokenizer, tmp_path / "out", corpus, extra=["--skip-bad-lines"])
    assert proc.returncode == 0, proc.stderr
    manifest = read_manifest(tmp_path / "out")
    expected = {"empty document": 2, "not JSON": 1, "not a JSON object": 1}
    assert manifest["skipped"] == manifest["inputs"][0]["skipped"] == expected
    assert manifest["inputs"][0]["documents"] == 5
    assert "skipped 2 records: empty document" in proc.stdout


def test_a_truncated_zst_file_is_a_user_error(slm, trained_tokenizer, tmp_path):
    zstandard = pytest.importorskip("zstandard")  # not on the GPU image
    payload = zstandard.ZstdCompressor().compress("\n".join(_good_lines(40)).encode())
    corpus = tmp_path / "cut.jsonl.zst"
    corpus.write_bytes(payload[:len(payload) // 2])
    proc = _prepare(slm, trained_tokenizer, tmp_path / "out", corpus)
    assert_user_error(proc, "truncated zstd", str(corpus))
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_a_parquet_file_without_the_text_column_is_a_user_error(slm, trained_tokenizer,
                                                                tmp_path):
    corpus = tmp_path / "table.parquet"
    pq.write_table(pyarrow.table({"content": ["a b c", "d e f"]}), corpus)
    assert_user_error(_prepare(slm, trained_tokenizer, tmp_path / "out", corpus),
                      "no column 'text'", str(corpus))
    manifest = prepare([corpus], trained_tokenizer, tmp_path / "ok", text_key="content",
                       progress_bar=False)
    assert manifest["inputs"][0]["documents"] == 2


def test_an_output_from_another_tokenizer_is_refused(slm, corpus_files, prepared_data,
                                                     tmp_path):
    import tokenizer

    other = tokenizer.train(corpus_files.paths, 700, tmp_path / "other")
    proc = _prepare(slm, other, prepared_data, *corpus_files.paths,
                    extra=["--shard-tokens", "4096", "--val-fraction", "0.1"])
    assert_user_error(proc, "different tokenizer", "manifest.json", "--overwrite")


def test_an_output_from_other_settings_is_refused(slm, corpus_files, trained_tokenizer,
                                                  prepared_data):
    proc = _prepare(slm, trained_tokenizer, prepared_data, *corpus_files.paths,
                    extra=["--shard-tokens", "5000", "--val-fraction", "0.1"])
    assert_user_error(proc, "different settings", "shard_tokens", "manifest.json")


def test_a_non_empty_foreign_output_directory_is_refused(slm, corpus_files, trained_tokenizer,
                                                         tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    proc = _prepare(slm, trained_tokenizer, tmp_path, corpus_files.paths[0])
    assert_user_error(proc, "not empty", str(tmp_path))
    assert (tmp_path / "notes.txt").read_text() == "mine"


@pytest.mark.slow  # three prepares of 120 files; the in-process interruption tests are fast
def test_a_killed_prepare_resumes_without_duplicates(corpus_files, trained_tokenizer, tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    documents = varied_documents(2400, seed=3)
    for i in range(120):
        _jsonl(corpus / f"part-{i:03d}.jsonl",
               [json.dumps({"text": t}) for t in documents[20 * i:20 * (i + 1)]])
    command = [sys.executable, "-m", "pretrain.cli", "data", "prepare", "--input", str(corpus),
               "--tokenizer", str(trained_tokenizer), "--shard-tokens", "3000",
               "--val-fraction", "0.1", "--output"]
    subprocess.run(command + [str(tmp_path / "straight")], check=True, capture_output=True)
    killed = subprocess.Popen(command + [str(tmp_path / "resumed")], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    progress = tmp_path / "resumed" / "prepare-progress.json"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if progress.exists() and json.loads(progress.read_text())["inputs_done"]:
            break
        time.sleep(0.005)
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait()
    assert not (tmp_path / "resumed" / "manifest.json").exists(), "finished before the kill"
    subprocess.run(command + [str(tmp_path / "resumed")], check=True, capture_output=True)
    straight = {p.name: p.read_bytes() for p in (tmp_path / "straight").iterdir()}
    resumed = {p.name: p.read_bytes() for p in (tmp_path / "resumed").iterdir()}
    assert resumed == straight


def test_bench_reports_stream_and_prepare_throughput(slm, prepared_data):
    proc = slm("data", "bench", prepared_data, "--seq-len", "64", "--samples", "200", "--json",
               check=True)
    result = json.loads(proc.stdout)
    assert result["stream"]["tokens_per_s"] > 0 and result["memmap"]["tokens_per_s"] > 0
    assert result["prepare"]["tokens"] > 0 and result["device"]
    assert result["command"].startswith("slm data bench")
