"""`slm tokenizer train | encode | bench` as a user runs them: real subprocesses, real files;
every user mistake is one `error:` line naming the file (and line), exit 2, no output dir."""

import json

import pyarrow
import pyarrow.parquet as pq
import pytest

from tests.user_errors import assert_user_error

VOCAB = "600"


@pytest.fixture(scope="module")
def cli_corpus(tmp_path_factory):
    from tests.fixtures.tokenizer import varied_documents, write_corpus

    return write_corpus(tmp_path_factory.mktemp("cli"), varied_documents(60, seed=2))


def test_train_writes_a_loadable_dir_and_reports_it(slm, cli_corpus, tmp_path):
    out = tmp_path / "tok"
    proc = slm("tokenizer", "train", "--input", cli_corpus.root, "--vocab-size", VOCAB,
               "--output", out, "--special-token", "<|endoftext|>", "--seed", "1", check=True)
    assert f"wrote {out}: vocab 600" in proc.stdout and proc.stderr == ""
    meta = json.loads((out / "tokenizer_meta.json").read_text())
    assert meta["special_tokens"] == {"<|endoftext|>": 3} and meta["settings"]["seed"] == 1
    import tokenizer

    assert tokenizer.load(out).fingerprint == meta["fingerprint"]


def test_encode_prints_ids_and_pieces(slm, trained_tokenizer):
    proc = slm("tokenizer", "encode", trained_tokenizer, "--text", "x 12", "--bos", check=True)
    lines = proc.stdout.splitlines()
    assert lines[0] == "5 tokens" and lines[1] == "1\t<s>"
    assert [line.split("\t")[1] for line in lines[-2:]] == ["1", "2"]
    as_json = json.loads(slm("tokenizer", "encode", trained_tokenizer, "--text", "x 12",
                             "--json", check=True).stdout)
    assert as_json["pieces"][-2:] == ["1", "2"] and len(as_json["ids"]) == 4


def test_bench_reports_tokens_per_second_for_ours_and_sentencepiece(slm, trained_tokenizer,
                                                                    corpus_files):
    proc = slm("tokenizer", "bench", trained_tokenizer, "--input", corpus_files.root,
               "--repeats", "1", "--json", check=True)
    result = json.loads(proc.stdout)
    assert result["documents"] == len(corpus_files.all_documents) and result["tokens"] > 10_000
    assert set(result["tokens_per_s"]) == {"sentencepiece_encode", "tokenizer_encode",
                                           "sentencepiece_batch", "tokenizer_encode_batch"}
    assert all(rate > 0 for rate in result["tokens_per_s"].values())


def test_skip_bad_lines_warns_and_records_the_counts(slm, cli_corpus, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "good"}\n{broken\n{"other": 1}\n')
    out = tmp_path / "tok"
    proc = slm("tokenizer", "train", "--input", cli_corpus.root, bad, "--vocab-size", VOCAB,
               "--output", out, "--skip-bad-lines", check=True)
    assert "skipped 2 bad records: 1 missing key 'text', 1 not JSON" in proc.stderr
    meta = json.loads((out / "tokenizer_meta.json").read_text())
    assert meta["skipped"] == {"missing key 'text'": 1, "not JSON": 1}


def _not_json(d):
    path = d / "bad.jsonl"
    path.write_text('{"text": "a"}\n{"text": "b"}\n{"text": oops}\n')
    return path, ("not JSON", f"{path}:3")


def _missing_key(d):
    path = d / "bad.jsonl"
    path.write_text('{"text": "a"}\n{"content": "b"}\n')
    return path, ("missing key 'text'", f"{path}:2")


def _truncated_zst(d):
    path = d / "bad.jsonl.zst"
    data = "".join(json.dumps({"text": f"doc {i} " * 30}) + "\n" for i in range(2000)).encode()
    zstandard = pytest.importorskip("zstandard")  # not on the GPU image
    compressed = zstandard.ZstdCompressor().compress(data)
    path.write_bytes(compressed[: len(compressed) // 2])
    return path, ("truncated zstd", str(path))


def _corrupt_zst(d):
    path = d / "bad.jsonl.zst"
    path.write_bytes(b"\x28\xb5\x2f\xfd garbage that is not a zstd frame")
    return path, ("zstd", str(path))


def _parquet_without_column(d):
    path = d / "bad.parquet"
    pq.write_table(pyarrow.table({"content": ["a", "b"]}), path)
    return path, ("no column 'text'", "--text-key", str(path))


def _missing_file(d):
    return d / "absent.jsonl", ("no such file", str(d / "absent.jsonl"))


# Each reader error is also tested in-process (test_corpus.py); here the ones not covered
# again elsewhere run by default, the rest with the slow suite (each run starts Python).
@pytest.mark.parametrize("make_bad_input", [
    _not_json, _truncated_zst, _parquet_without_column,
    pytest.param(_missing_key, marks=pytest.mark.slow),
    pytest.param(_corrupt_zst, marks=pytest.mark.slow),
    pytest.param(_missing_file, marks=pytest.mark.slow),
])
def test_bad_input_is_one_error_line_and_leaves_no_output(slm, cli_corpus, tmp_path,
                                                          make_bad_input):
    bad_dir = tmp_path / "in"
    bad_dir.mkdir()
    path, fragments = make_bad_input(bad_dir)
    out = tmp_path / "tok"
    proc = slm("tokenizer", "train", "--input", cli_corpus.root, path, "--vocab-size", VOCAB,
               "--output", out)
    assert_user_error(proc, *fragments)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]


def test_vocab_too_small_is_a_user_error(slm, cli_corpus, tmp_path):
    proc = slm("tokenizer", "train", "--input", cli_corpus.root, "--vocab-size", "200",
               "--output", tmp_path / "tok")
    assert_user_error(proc, "vocab size 200 is too small", "--vocab-size")
    assert not (tmp_path / "tok").exists()


def test_non_empty_output_without_overwrite_is_a_user_error(slm, cli_corpus, tmp_path):
    (tmp_path / "tok").mkdir()
    (tmp_path / "tok" / "precious.txt").write_text("x")
    proc = slm("tokenizer", "train", "--input", cli_corpus.root, "--vocab-size", VOCAB,
               "--output", tmp_path / "tok")
    assert_user_error(proc, "not empty", "--overwrite", str(tmp_path / "tok"))
    assert [p.name for p in (tmp_path / "tok").iterdir()] == ["precious.txt"]


def test_encode_with_a_missing_tokenizer_is_a_user_error(slm, tmp_path):
    assert_user_error(slm("tokenizer", "encode", tmp_path / "nope", "--text", "x"),
                      "no such tokenizer", str(tmp_path / "nope"))
