"""All-or-nothing writes: a file or a directory appears complete under its name, or not at all.

Everything is written under a temporary name in the destination's own directory (same file
system) and renamed into place, which POSIX makes atomic: a crash, a full disk or SIGKILL at any
moment leaves either the old content or the new, never half of it. Leftover temporaries are
named ``.tmp-<name>...`` so listings can ignore them.

It lives in ``tokenizer/`` because that is the folder every other folder but ``model/`` may
import (``data/`` and ``pretrain/`` write through it; ``model/`` imports nothing of ours).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

TMP_PREFIX = ".tmp-"


@contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "w", *, encoding: str | None = "utf-8",
                newline: str | None = None, permissions: int | None = None) -> Iterator[IO]:
    """Open a temporary file beside ``path`` for writing; on a clean exit it replaces ``path``
    (``permissions``, e.g. 0o755, are set first); on an exception it is removed. The handle's
    ``name`` is the temporary path, for a caller that must hand the finished file to a tool
    before it takes its name (flush first)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f"{TMP_PREFIX}{path.name}.", dir=path.parent)
    try:
        os.close(fd)  # reopened by name, so that handle.name is the path and not a number
        binary = "b" in mode
        with open(tmp, mode, encoding=None if binary else encoding,
                  newline=None if binary else newline) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())  # the bytes reach the disk before the name does (power loss)
        os.chmod(tmp, 0o644 if permissions is None else permissions)  # mkstemp makes it 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomic(path: str | os.PathLike, content: str | bytes, *,
                 permissions: int | None = None) -> Path:
    """Write ``content`` (text as UTF-8, or bytes) to ``path`` all at once; returns ``path``."""
    mode = "wb" if isinstance(content, bytes) else "w"
    with atomic_file(path, mode, permissions=permissions) as handle:
        handle.write(content)
    return Path(path)


def write_json_atomic(path: str | os.PathLike, payload) -> Path:
    """``payload`` as indented JSON with sorted keys (equal values give equal bytes)."""
    return write_atomic(path, json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")


@contextmanager
def atomic_directory(path: str | os.PathLike, *, replace: bool = False) -> Iterator[Path]:
    """Yield an empty temporary directory beside ``path``; on a clean exit it is renamed to
    ``path``. An existing ``path`` is replaced only then, if ``replace`` (else it must be an
    empty directory, which is removed); on an exception the temporary directory is removed and
    ``path`` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{path.name}.", dir=path.parent))
    try:
        yield tmp
        tmp.chmod(0o755)  # mkdtemp makes it private; our outputs are meant to be shared
        if path.exists() and not replace:
            path.rmdir()  # raises unless empty: the caller promised it was
        swap_directory(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def temporary_target(name: str) -> str | None:
    """The name that the leftover temporary ``name`` was being written for, or None when
    ``name`` is not one of ours (callers that clean a directory after a kill use it)."""
    if not name.startswith(TMP_PREFIX):
        return None
    # mkstemp/mkdtemp and swap_directory append ".<random>" or ".old-<pid>" to the name.
    return name[len(TMP_PREFIX):].rsplit(".", 1)[0] or None


def swap_directory(new: str | os.PathLike, path: str | os.PathLike) -> None:
    """Rename the finished directory ``new`` to ``path``; an existing ``path`` is moved aside
    first and deleted only after ``new`` is in place."""
    new, path = Path(new), Path(path)
    if not path.exists():
        os.rename(new, path)
        return
    old = path.with_name(f"{TMP_PREFIX}{path.name}.old-{os.getpid()}")
    os.rename(path, old)
    os.rename(new, path)
    shutil.rmtree(old, ignore_errors=True)
