"""tokenizer.corpus: every input format read back exactly; bad records fail with path:line or
are skipped and counted."""

import json
from collections import Counter

import pyarrow
import pyarrow.parquet as pq
import pytest

from tokenizer import TokenizerError
from tokenizer.corpus import CorpusError, expand_inputs, iter_documents


def write_jsonl(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_every_format_yields_exactly_the_documents_written(corpus_files):
    suffixes = {path.name.split(".", 1)[1] for path in corpus_files.paths}
    assert suffixes == {"jsonl", "jsonl.zst", "parquet", "txt"}
    for path in corpus_files.paths:
        assert list(iter_documents(path)) == corpus_files.documents[path], path


def test_txt_file_is_one_document_with_blank_lines_tabs_and_crlf_kept(tmp_path):
    text = "first paragraph\n\n\tsecond  paragraph\r\n\n"
    (tmp_path / "a.txt").write_bytes(text.encode("utf-8"))
    assert list(iter_documents(tmp_path / "a.txt")) == [text]


def test_expand_inputs_sorts_and_dedupes_files_dirs_and_globs(corpus_files):
    root = corpus_files.root
    expanded = expand_inputs([root / "d01.txt", root, str(root / "*.jsonl*")])
    assert expanded == sorted(corpus_files.paths)
    assert expand_inputs([str(root / "d0[12].txt")]) == [root / "d01.txt", root / "d02.txt"]


def test_expand_inputs_skips_unsupported_files_inside_directories(tmp_path):
    (tmp_path / "notes.md").write_text("x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "doc.txt").write_text("y")
    assert expand_inputs([tmp_path]) == [tmp_path / "sub" / "doc.txt"]


@pytest.mark.parametrize("make, fragment", [
    (lambda d: d / "missing.jsonl", "no such file or directory"),
    (lambda d: str(d / "*.parquet"), "match the pattern"),
    (lambda d: (d / "x.csv").write_text("a") and d / "x.csv", "unsupported input type"),
    (lambda d: (d / "empty").mkdir() or d / "empty", "directory holds no"),
])
def test_expand_inputs_rejects_arguments_that_match_nothing(tmp_path, make, fragment):
    arg = make(tmp_path)
    with pytest.raises(CorpusError, match=fragment) as info:
        expand_inputs([arg])
    assert str(arg) in str(info.value)


def test_corpus_error_is_a_tokenizer_error_and_a_value_error():
    assert issubclass(CorpusError, TokenizerError) and issubclass(CorpusError, ValueError)


@pytest.mark.parametrize("line, reason", [
    ("{not json", "not JSON"),
    ("[1, 2]", "not a JSON object"),
    ('{"content": "x"}', "missing key 'text'"),
    ('{"text": 7}', "key 'text' is not a string"),
    ('{"text": ""}', "empty document"),
])
def test_bad_jsonl_record_names_reason_file_and_line(tmp_path, line, reason):
    path = write_jsonl(tmp_path / "a.jsonl", ['{"text": "ok"}', "", line, '{"text": "after"}'])
    with pytest.raises(CorpusError) as info:
        list(iter_documents(path))
    assert reason in str(info.value) and f"{path}:3" in str(info.value)


def test_skip_bad_lines_skips_and_counts_each_reason(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", [
        '{"text": "one"}', "{oops", "{oops", '{"body": "x"}', '{"text": ""}', '{"text": "two"}'])
    skips = Counter()
    assert list(iter_documents(path, skip_bad_lines=True, skips=skips)) == ["one", "two"]
    assert skips == Counter({"not JSON": 2, "missing key 'text'": 1, "empty document": 1})


def test_invalid_utf8_line_is_a_bad_record(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_bytes(b'{"text": "ok"}\n{"text": "\xff\xfe"}\n')
    with pytest.raises(CorpusError, match=f"not JSON .*{path.name}:2"):
        list(iter_documents(path))


def test_text_key_selects_the_field(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", ['{"content": "x", "text": "y"}'])
    assert list(iter_documents(path, text_key="content")) == ["x"]


def test_exclude_sets_drops_listed_redpajama_sets_and_counts_them(tmp_path):
    records = [{"text": f"doc {i}", "meta": {"redpajama_set_name": name}}
               for i, name in enumerate(["RedPajamaC4", "RedPajamaGithub", "RedPajamaGithub"])]
    path = write_jsonl(tmp_path / "a.jsonl", [json.dumps(r) for r in records])
    skips = Counter()
    docs = list(iter_documents(path, exclude_sets=["RedPajamaGithub"], skips=skips))
    assert docs == ["doc 0"] and skips == Counter({"excluded set RedPajamaGithub": 2})


def test_zst_with_several_frames_is_read_to_the_end(tmp_path):
    zstandard = pytest.importorskip("zstandard")  # not on the GPU image
    compressor = zstandard.ZstdCompressor()
    path = tmp_path / "a.jsonl.zst"
    path.write_bytes(compressor.compress(b'{"text": "one"}\n{"text": "tw')
                     + compressor.compress(b'o"}\n{"text": "three"}'))
    assert list(iter_documents(path)) == ["one", "two", "three"]


def test_truncated_zst_fails_naming_the_file(tmp_path):
    data = "".join(json.dumps({"text": f"document {i} " * 20}) + "\n" for i in range(3000))
    zstandard = pytest.importorskip("zstandard")  # not on the GPU image
    compressed = zstandard.ZstdCompressor().compress(data.encode())
    path = tmp_path / "a.jsonl.zst"
    path.write_bytes(compressed[: len(compressed) // 2])
    with pytest.raises(CorpusError, match="truncated zstd") as info:
        list(iter_documents(path, skip_bad_lines=True))
    assert str(path) in str(info.value)


@pytest.mark.parametrize("content", [b"this is not zstd at all", b""])
def test_corrupt_or_empty_zst_fails_naming_the_file(tmp_path, content):
    path = tmp_path / "a.jsonl.zst"
    path.write_bytes(content)
    with pytest.raises(CorpusError, match="zstd") as info:
        list(iter_documents(path))
    assert str(path) in str(info.value)


def test_parquet_without_the_column_lists_the_columns(tmp_path):
    path = tmp_path / "a.parquet"
    pq.write_table(pyarrow.table({"content": ["x"], "id": [1]}), path)
    with pytest.raises(CorpusError, match=r"no column 'text' \(columns: content, id\)"):
        list(iter_documents(path))
    assert list(iter_documents(path, text_key="content")) == ["x"]


def test_parquet_null_is_a_bad_record_with_row_number(tmp_path):
    path = tmp_path / "a.parquet"
    pq.write_table(pyarrow.table({"text": ["a", None, "c"]}), path)
    with pytest.raises(CorpusError, match=f"'text' is null .*{path.name}:2"):
        list(iter_documents(path))
    skips = Counter()
    assert list(iter_documents(path, skip_bad_lines=True, skips=skips)) == ["a", "c"]
    assert skips == Counter({"'text' is null": 1})


def test_parquet_non_string_column_and_garbage_file_fail(tmp_path):
    numbers = tmp_path / "n.parquet"
    pq.write_table(pyarrow.table({"text": [1, 2]}), numbers)
    with pytest.raises(CorpusError, match="not strings"):
        list(iter_documents(numbers))
    garbage = tmp_path / "g.parquet"
    garbage.write_bytes(b"PAR1 definitely not parquet")
    with pytest.raises(CorpusError, match="unreadable parquet") as info:
        list(iter_documents(garbage))
    assert str(garbage) in str(info.value)


def test_missing_file_and_invalid_utf8_txt_fail_naming_the_file(tmp_path):
    with pytest.raises(CorpusError, match="no such file"):
        list(iter_documents(tmp_path / "gone.jsonl"))
    path = tmp_path / "bad.txt"
    path.write_bytes(b"caf\xe9")
    with pytest.raises(CorpusError, match=f"invalid UTF-8 .*{path.name}"):
        list(iter_documents(path))
