"""Our datatrove steps around the library's filters and dedup stages: read the corpus with our
own readers, hand documents from one pass to the next, count what flows, keep removed samples.

Between passes documents live in ``{rank:05d}.jsonl.zst`` files, one per task, each line
``{"text", "record", ...}`` where ``record`` holds the output fields (``id`` and the input's
other keys) untouched, so the final `id` is byte-for-byte the input's.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

# Extra state carried between passes next to the record (the perplexity score).
CARRIED_KEYS = ("reference_loss",)


def task_file(folder: str | Path, rank: int) -> Path:
    return Path(folder) / f"{rank:05d}.jsonl.zst"


class CorpusReader(PipelineStep):
    """Reads the inputs through `tokenizer.corpus.iter_records` (the formats and bad-record
    rules of `data prepare`). Task `rank` of `world_size` takes the records whose
    ``(file index + line) % world_size == rank``: every task shares every file, line by line,
    so the split depends only on the number of tasks, never on the number of workers."""

    type = "📖 - READER"
    name = "corpus (tokenizer.corpus)"

    def __init__(self, paths: list[str], text_key: str = "text", skip_bad_lines: bool = False,
                 exclude_sets: tuple[str, ...] = ()):
        super().__init__()
        self.paths = [str(p) for p in paths]
        self.text_key = text_key
        self.skip_bad_lines = skip_bad_lines
        self.exclude_sets = tuple(exclude_sets)

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1):
        from tokenizer.corpus import iter_records

        for file_index, path in enumerate(self.paths):
            skips: Counter = Counter()
            records = iter_records(
                path, text_key=self.text_key, skip_bad_lines=self.skip_bad_lines, skips=skips,
                exclude_sets=self.exclude_sets,
                wanted=lambda line, i=file_index: (i + line) % world_size == rank)
            for record in records:
                fields = dict(record.fields)
                if "id" not in fields:
                    fields = {"id": f"{path}:{record.line}", **fields}
                self.stat_update("documents")
                self.stat_update("bytes", value=len(record.text.encode("utf-8")))
                yield Document(text=record.text, id=str(fields["id"]), metadata={"record": fields})
            for reason, count in skips.items():
                self.stat_update(f"skipped_{reason}", value=count)


class PassReader(PipelineStep):
    """Reads the documents a previous pass wrote for this task, in the order it wrote them."""

    type = "📖 - READER"
    name = "previous pass"

    def __init__(self, folder: str):
        super().__init__()
        self.folder = str(folder)

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1):
        from tokenizer.corpus import iter_records

        for record in iter_records(task_file(self.folder, rank)):
            fields = record.fields
            metadata = {"record": fields["record"]}
            metadata.update((k, fields[k]) for k in CARRIED_KEYS if k in fields)
            yield Document(text=record.text, id=str(fields["record"]["id"]), metadata=metadata)


class PassWriter(PipelineStep):
    """Writes this task's documents to ``folder/{rank:05d}.jsonl.zst`` and passes them on.

    The file is written under a temporary name and renamed when the task's stream ends, so a
    killed task leaves nothing that a rerun could mistake for its output. `final` writes the
    output records (``{"text", "id", ...}``) instead of the between-pass ones."""

    type = "💽 - WRITER"
    name = "jsonl.zst"

    def __init__(self, folder: str, final: bool = False):
        super().__init__()
        self.folder = str(folder)
        self.final = final

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1):
        import zstandard

        from tokenizer.atomic import atomic_file

        path = task_file(self.folder, rank)
        with atomic_file(path, "wb") as raw, \
                zstandard.ZstdCompressor(level=3).stream_writer(raw, closefd=False) as out:
            for doc in data:
                out.write(json.dumps(self.line(doc), ensure_ascii=False).encode("utf-8") + b"\n")
                yield doc

    def line(self, doc: Document) -> dict:
        record = doc.metadata["record"]
        if self.final:
            return {"text": doc.text, **record}
        line = {"text": doc.text, "record": record}
        line.update((k, doc.metadata[k]) for k in CARRIED_KEYS if k in doc.metadata)
        return line


class Tally(PipelineStep):
    """Counts the documents and UTF-8 bytes that flow past (the report's in/out columns)."""

    type = "📊 - STATS"

    def __init__(self, point: str):
        self.name = point  # before the base class names its stats after it
        super().__init__()

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1):
        for doc in data:
            self.stat_update("documents")
            self.stat_update("bytes", value=len(doc.text.encode("utf-8")))
            yield doc


class RemovedSamples:
    """A filter's `exclusion_writer` that keeps the first `per_reason` removed documents of
    each reason, per task, in ``folder/{rank:05d}.jsonl`` (merged into ``DIR/removed/``)."""

    def __init__(self, folder: str, per_reason: int, default_reason: str):
        self.folder = str(folder)
        self.per_reason = per_reason
        self.default_reason = default_reason
        self._file = None
        self._counts: Counter = Counter()

    def __enter__(self):
        self._counts = Counter()
        return self

    def __exit__(self, *exc):
        if self._file is not None:
            self._file.close()
            self._file = None

    def write(self, document: Document, rank: int = 0, **kwargs) -> None:
        reason = document.metadata.get("filter_reason") or self.default_reason
        if self._counts[reason] >= self.per_reason:
            return
        self._counts[reason] += 1
        if self._file is None:
            os.makedirs(self.folder, exist_ok=True)
            self._file = open(Path(self.folder) / f"{rank:05d}.jsonl", "w", encoding="utf-8")
        record = document.metadata["record"]
        self._file.write(json.dumps({"reason": reason, "id": record["id"], "text": document.text},
                                    ensure_ascii=False) + "\n")


def exact_dedup_content(doc: Document) -> bytes:
    """What exact dedup compares: the text as is (UTF-8; datatrove's hash takes bytes)."""
    return doc.text.encode("utf-8")
