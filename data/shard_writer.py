"""Append whole documents to one split's shards (format in `data.shards`), resumably.

The shard being filled lives at ``{split}-{n:05d}.bin.partial``; when it reaches
``shard_tokens`` its document index ``.idx`` is written, then the ``.bin.partial`` is renamed
to ``.bin``. `checkpoint()` flushes and returns a small state (finished shards, how many tokens
and documents the open shard holds); a writer constructed from that state truncates the open
shard back to it and removes anything written after it, so a prepare killed at any instant
continues without duplicates and produces the same bytes as an uninterrupted one.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from data import DataError
from data.shards import DOCUMENT_INDEX_DTYPE, index_file, sha256_file, shard_file
from tokenizer.atomic import temporary_target, write_atomic

_PARTIAL = ".partial"


class ShardWriter:
    """Packs documents into fixed-size shards of one split.

    `state` is a value returned by an earlier `checkpoint()` (None: start empty; any files of
    this split already in the directory are removed).
    """

    def __init__(self, directory: Path, split: str, dtype: np.dtype, shard_tokens: int,
                 state: dict | None = None):
        self.directory, self.split, self.dtype = Path(directory), split, dtype
        self.shard_tokens = int(shard_tokens)
        state = state or {"shards": [], "open_tokens": 0, "open_documents": 0}
        self.shards: list[dict] = [dict(s) for s in state["shards"]]
        self.open_tokens = int(state["open_tokens"])
        self._restore_open_shard(int(state["open_documents"]))

    @property
    def _number(self) -> int:
        return len(self.shards)

    def _path(self, name: str) -> Path:
        return self.directory / name

    def _restore_open_shard(self, open_documents: int) -> None:
        number = self._number
        partial = self._path(shard_file(self.split, number) + _PARTIAL)
        final = self._path(shard_file(self.split, number))
        index_partial = self._path(index_file(self.split, number) + _PARTIAL)
        index_final = self._path(index_file(self.split, number))
        starts = np.zeros(0, dtype=DOCUMENT_INDEX_DTYPE)
        if self.open_tokens:
            # A kill between finishing the shard and the next checkpoint leaves it renamed.
            if not partial.exists() and final.exists():
                os.replace(final, partial)
            source = index_partial if index_partial.exists() else index_final
            if not partial.exists() or not source.exists():
                raise DataError(f"the prepare progress refers to a missing shard file; rerun "
                                f"with --overwrite ({partial})")
            starts = np.fromfile(source, dtype=DOCUMENT_INDEX_DTYPE)[:open_documents]
        self._remove_files_from(number, keep_open=bool(self.open_tokens))
        if self.open_tokens:
            write_atomic(index_partial, starts.tobytes())
        self._starts: list[int] = starts.tolist()
        self._file = open(partial, "r+b" if self.open_tokens else "wb")
        self._file.truncate(self.open_tokens * self.dtype.itemsize)
        self._file.seek(0, os.SEEK_END)

    def _remove_files_from(self, number: int, keep_open: bool) -> None:
        """Delete this split's files numbered >= `number` (the open shard's .bin.partial kept),
        and the temporaries of any of them that a kill left behind."""
        pattern = re.compile(rf"^{re.escape(self.split)}-(\d+)\.(bin|idx)(\.partial)?$")
        for path in self.directory.iterdir():
            match = pattern.match(temporary_target(path.name) or path.name)
            if not match or int(match.group(1)) < number:
                continue
            if keep_open and int(match.group(1)) == number and path.name.endswith(".bin" + _PARTIAL):
                continue
            path.unlink()

    def add(self, tokens: np.ndarray, document_lengths: np.ndarray) -> None:
        """Append whole documents: `tokens` is their ids concatenated, lengths sum to its size."""
        tokens = np.asarray(tokens).astype(self.dtype, copy=False)
        starts_in_chunk = np.concatenate(([0], np.cumsum(document_lengths)[:-1])).astype(np.int64)
        position = 0
        while position < len(tokens):
            take = min(self.shard_tokens - self.open_tokens, len(tokens) - position)
            low, high = np.searchsorted(starts_in_chunk, [position, position + take])
            self._starts.extend((starts_in_chunk[low:high] - position + self.open_tokens).tolist())
            self._file.write(tokens[position:position + take].tobytes())
            self.open_tokens += take
            position += take
            if self.open_tokens == self.shard_tokens:
                self._finish_open_shard()

    def _finish_open_shard(self) -> None:
        number = self._number
        self._file.close()
        index_payload = np.asarray(self._starts, dtype=DOCUMENT_INDEX_DTYPE).tobytes()
        write_atomic(self._path(index_file(self.split, number)), index_payload)
        bin_path = self._path(shard_file(self.split, number))
        os.replace(self._path(bin_path.name + _PARTIAL), bin_path)
        index_partial = self._path(index_file(self.split, number) + _PARTIAL)
        if index_partial.exists():
            index_partial.unlink()
        self.shards.append({
            "file": bin_path.name, "index_file": index_file(self.split, number),
            "tokens": self.open_tokens, "documents": len(self._starts),
            "sha256": sha256_file(bin_path),
            "index_sha256": sha256_file(self._path(index_file(self.split, number))),
        })
        self.open_tokens, self._starts = 0, []
        self._file = open(self._path(shard_file(self.split, self._number) + _PARTIAL), "wb")

    def checkpoint(self) -> dict:
        """Flush and return the state a later writer resumes from (small: no token data)."""
        self._file.flush()
        index_payload = np.asarray(self._starts, dtype=DOCUMENT_INDEX_DTYPE).tobytes()
        write_atomic(self._path(index_file(self.split, self._number) + _PARTIAL), index_payload)
        return {"shards": [dict(s) for s in self.shards], "open_tokens": self.open_tokens,
                "open_documents": len(self._starts)}

    def finish(self) -> list[dict]:
        """Close the last (shorter) shard if it holds tokens; returns all shard entries."""
        if self.open_tokens:
            self._finish_open_shard()
        self._file.close()
        self._remove_files_from(self._number, keep_open=False)
        return self.shards

    def close(self) -> None:
        """Release the open file without finishing (after an error; the state stays resumable)."""
        self._file.close()
