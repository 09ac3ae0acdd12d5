"""Corpus readers shared by tokenizer training and `data prepare`: paths in, documents out.

Supported inputs (by file name suffix):

- ``.txt``: the whole file is ONE document, its text exactly as stored (UTF-8; newlines,
  tabs and blank lines kept). Blank lines are not document boundaries because they occur
  inside code and prose alike; a corpus with many documents belongs in ``.jsonl``.
- ``.jsonl``: one JSON object per line; the document is the string under ``text_key``.
  Lines holding only whitespace are not records and are passed over.
- ``.jsonl.zst``: the same, zstandard-compressed (SlimPajama's layout); streamed in chunks,
  never decompressed to disk or fully into memory; multi-frame files are read to the end.
- ``.parquet``: the string column ``text_key``, read in record batches.

Bad records (a line that is not a JSON object, a missing or non-string text field, an empty
document, invalid UTF-8, a null parquet value) raise ``CorpusError`` naming ``path:line``
(line = 1-based line number, or row number for parquet). With ``skip_bad_lines=True`` they
are skipped instead and counted by reason in the caller's ``skips`` Counter, so that no
record disappears silently. A broken container (truncated or corrupt ``.zst``, unreadable
parquet, missing column) always raises: there is no next record to continue with.
"""

from __future__ import annotations

import glob
import json
import os
from collections import Counter
from pathlib import Path
from typing import Callable, Iterable, Iterator, NamedTuple

from tokenizer import TokenizerError

SUFFIXES = (".jsonl.zst", ".jsonl", ".parquet", ".txt")

_ZST_READ_BYTES = 1 << 20
_PARQUET_BATCH_ROWS = 1024


class CorpusError(TokenizerError):
    """An input corpus file is missing, unreadable or holds a bad record ("what (path:line)")."""


def input_suffix(path: str | Path) -> str | None:
    """The supported suffix `path` ends with (``.jsonl.zst`` before ``.jsonl``), or None."""
    name = str(path)
    return next((suffix for suffix in SUFFIXES if name.endswith(suffix)), None)


def expand_inputs(paths: Iterable[str | Path]) -> list[Path]:
    """Expand files, directories (recursively, supported suffixes only) and glob patterns.

    Returns the matched files sorted by path and without duplicates, so the corpus order does
    not depend on how the inputs were spelled. Raises CorpusError for an argument that matches
    nothing, a named file with an unsupported suffix, or when the whole list is empty.
    """
    found: set[Path] = set()
    for raw in paths:
        arg = str(raw)
        if os.path.isdir(arg):
            matches = [p for p in Path(arg).rglob("*") if p.is_file() and input_suffix(p)]
            if not matches:
                raise CorpusError(f"directory holds no {'/'.join(SUFFIXES)} files ({arg})")
        elif os.path.isfile(arg):
            if not input_suffix(arg):
                raise CorpusError(f"unsupported input type, expected one of "
                                  f"{', '.join(SUFFIXES)} ({arg})")
            matches = [Path(arg)]
        elif glob.has_magic(arg):
            matches = [Path(p) for p in glob.glob(arg, recursive=True)
                       if os.path.isfile(p) and input_suffix(p)]
            if not matches:
                raise CorpusError(f"no {'/'.join(SUFFIXES)} files match the pattern ({arg})")
        else:
            raise CorpusError(f"no such file or directory ({arg})")
        found.update(matches)
    if not found:
        raise CorpusError("no input files given (--input)")
    return sorted(found)


def iter_documents(path: str | Path, *, text_key: str = "text", skip_bad_lines: bool = False,
                   skips: Counter | None = None, exclude_sets: Iterable[str] = ()) -> Iterator[str]:
    """Yield the documents of one corpus file, in file order (rules in the module docstring).

    `skips` (a Counter, updated in place) receives one count per skipped record under its
    reason, e.g. ``"not JSON"`` or ``"excluded set RedPajamaGithub"``. `exclude_sets` drops
    jsonl records whose ``meta.redpajama_set_name`` is listed; that is a choice, not an error,
    so it is counted whatever `skip_bad_lines` says.
    """
    for record in iter_records(path, text_key=text_key, skip_bad_lines=skip_bad_lines,
                               skips=skips, exclude_sets=exclude_sets):
        yield record.text


class CorpusRecord(NamedTuple):
    """One document with where it came from: `line` is the 1-based jsonl line (parquet row;
    1 for a .txt file) and `fields` the record's other keys (jsonl: every key but the text;
    parquet: the ``id`` column when there is one; .txt: none)."""

    text: str
    line: int
    fields: dict


def iter_records(path: str | Path, *, text_key: str = "text", skip_bad_lines: bool = False,
                 skips: Counter | None = None, exclude_sets: Iterable[str] = (),
                 wanted: Callable[[int], bool] | None = None) -> Iterator[CorpusRecord]:
    """`iter_documents` with each document's line and other fields (for `data curate`).

    `wanted(line)`, when given, picks the records to parse: lines it rejects are passed over
    unread (not decoded, not validated, not counted), so that workers sharing one file by
    line number each parse only their own share.
    """
    path = Path(path)
    suffix = input_suffix(path)
    if suffix is None:
        raise CorpusError(f"unsupported input type, expected one of {', '.join(SUFFIXES)} ({path})")
    if not path.is_file():
        raise CorpusError(f"no such file ({path})")
    skips = Counter() if skips is None else skips
    wanted = wanted or _every_line

    def bad(reason: str, where: str) -> None:
        if not skip_bad_lines:
            raise CorpusError(f"{reason} ({path}:{where}); --skip-bad-lines skips such records")
        skips[reason] += 1

    if suffix == ".txt":
        if wanted(1):
            yield from _txt_documents(path, bad)
    elif suffix == ".parquet":
        yield from _parquet_documents(path, text_key, bad, wanted)
    else:
        lines = _zst_lines(path) if suffix == ".jsonl.zst" else _plain_lines(path)
        yield from _jsonl_documents(lines, text_key, frozenset(exclude_sets), bad, skips, wanted)


def _every_line(line: int) -> bool:
    return True


def _txt_documents(path: Path, bad) -> Iterator[str]:
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        bad("invalid UTF-8", f"byte {e.start}")
        return
    except OSError as e:
        raise CorpusError(f"cannot read file: {e.strerror} ({path})") from None
    if text:
        yield CorpusRecord(text, 1, {})
    else:
        bad("empty document", "1")


def _jsonl_documents(lines: Iterator[bytes], text_key: str, exclude_sets: frozenset[str],
                     bad, skips: Counter, wanted: Callable[[int], bool]) -> Iterator[CorpusRecord]:
    for line_number, line in enumerate(lines, start=1):
        if not wanted(line_number) or not line.strip():
            continue
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            bad("not JSON", str(line_number))
            continue
        if not isinstance(record, dict):
            bad("not a JSON object", str(line_number))
            continue
        if exclude_sets:
            meta = record.get("meta")
            set_name = meta.get("redpajama_set_name") if isinstance(meta, dict) else None
            if set_name in exclude_sets:
                skips[f"excluded set {set_name}"] += 1
                continue
        if text_key not in record:
            bad(f"missing key '{text_key}'", str(line_number))
            continue
        text = record[text_key]
        if not isinstance(text, str):
            bad(f"key '{text_key}' is not a string", str(line_number))
        elif not text:
            bad("empty document", str(line_number))
        else:
            del record[text_key]
            yield CorpusRecord(text, line_number, record)


def _plain_lines(path: Path) -> Iterator[bytes]:
    try:
        with open(path, "rb") as f:
            yield from f
    except OSError as e:
        raise CorpusError(f"cannot read file: {e.strerror} ({path})") from None


def _zst_lines(path: Path) -> Iterator[bytes]:
    """Lines of a zstandard file, decompressed chunk by chunk; truncation and garbage raise."""
    import zstandard

    decompressor = zstandard.ZstdDecompressor()
    frame = decompressor.decompressobj()
    frame_has_input = False  # a frame that got bytes but never reached its end = truncation
    frames_done = 0
    pending = b""
    line_count = 0
    with open(path, "rb") as f:
        while chunk := f.read(_ZST_READ_BYTES):
            while chunk:
                frame_has_input = True
                try:
                    data = frame.decompress(chunk)
                except zstandard.ZstdError as e:
                    raise CorpusError(f"corrupt zstd data after line {line_count}: {e} "
                                      f"({path})") from None
                chunk = b""
                if frame.eof:  # the next frame's bytes, if any, are left in unused_data
                    chunk, frame_has_input = frame.unused_data, False
                    frame = decompressor.decompressobj()
                    frames_done += 1
                lines = (pending + data).split(b"\n")
                pending = lines.pop()
                line_count += len(lines)
                yield from lines
    if frame_has_input or not frames_done:
        raise CorpusError(f"truncated zstd file: the stream ends inside a frame after line "
                          f"{line_count} ({path})")
    if pending:
        yield pending


def _parquet_documents(path: Path, text_key: str, bad,
                       wanted: Callable[[int], bool]) -> Iterator[CorpusRecord]:
    import pyarrow
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except (pyarrow.ArrowException, OSError) as e:
        raise CorpusError(f"unreadable parquet file: {e} ({path})") from None
    columns = parquet.schema_arrow.names
    if text_key not in columns:
        raise CorpusError(f"parquet file has no column '{text_key}' (columns: "
                          f"{', '.join(columns)}); choose one with --text-key ({path})")
    column_type = parquet.schema_arrow.field(text_key).type
    if not (pyarrow.types.is_string(column_type) or pyarrow.types.is_large_string(column_type)):
        raise CorpusError(f"parquet column '{text_key}' holds {column_type}, not strings ({path})")
    id_column = ["id"] if "id" in columns and text_key != "id" else []
    row_number = 0
    try:
        for batch in parquet.iter_batches(batch_size=_PARQUET_BATCH_ROWS,
                                          columns=[text_key, *id_column]):
            ids = batch.column(1).to_pylist() if id_column else None
            for index, text in enumerate(batch.column(0).to_pylist()):
                row_number += 1
                if not wanted(row_number):
                    continue
                if text is None:
                    bad(f"'{text_key}' is null", str(row_number))
                elif not text:
                    bad("empty document", str(row_number))
                else:
                    yield CorpusRecord(text, row_number, {"id": ids[index]} if ids else {})
    except pyarrow.ArrowException as e:
        raise CorpusError(f"corrupt parquet data after row {row_number}: {e} ({path})") from None
