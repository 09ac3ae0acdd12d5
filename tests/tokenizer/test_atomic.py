"""All-or-nothing writes: the destination holds the old content or the new, never a part."""

import os

import pytest

from tokenizer.atomic import (atomic_directory, atomic_file, temporary_target, write_atomic,
                              write_json_atomic)


def test_a_file_written_atomically_replaces_the_old_one_whole(tmp_path):
    path = tmp_path / "sub" / "a.txt"
    write_atomic(path, "old")
    write_atomic(path, "new text")
    assert path.read_text() == "new text"
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)
    assert os.listdir(path.parent) == ["a.txt"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "a.json"
    write_json_atomic(path, {"b": 1, "a": 2})
    with pytest.raises(RuntimeError):
        with atomic_file(path) as handle:
            handle.write("half")
            raise RuntimeError("disk full")
    assert path.read_text() == '{\n  "a": 2,\n  "b": 1\n}\n'
    assert os.listdir(tmp_path) == ["a.json"]


def test_a_directory_appears_complete_or_not_at_all(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(RuntimeError):
        with atomic_directory(out) as tmp:
            (tmp / "weights").write_text("x")
            raise RuntimeError("killed")
    assert os.listdir(tmp_path) == []
    with atomic_directory(out) as tmp:
        (tmp / "weights").write_text("x")
    assert sorted(os.listdir(out)) == ["weights"]


def test_replacing_a_directory_swaps_it_only_when_the_new_one_is_done(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old").write_text("old")
    with pytest.raises(OSError):
        with atomic_directory(out) as tmp:  # not replace: a non-empty target is refused
            (tmp / "new").write_text("new")
    assert os.listdir(out) == ["old"]
    with atomic_directory(out, replace=True) as tmp:
        (tmp / "new").write_text("new")
    assert os.listdir(out) == ["new"] and os.listdir(tmp_path) == ["out"]


def test_the_open_handle_names_the_temporary_a_tool_can_read_before_the_rename(tmp_path):
    path = tmp_path / "job.sbatch"
    with atomic_file(path, permissions=0o755) as handle:
        handle.write("#!/bin/bash\n")
        handle.flush()
        assert open(handle.name).read() == "#!/bin/bash\n" and not path.exists()
    assert path.read_text() == "#!/bin/bash\n" and oct(path.stat().st_mode & 0o777) == oct(0o755)


def test_a_leftover_temporary_names_the_file_it_was_written_for():
    assert temporary_target(".tmp-train-00003.idx.partial.k2j_9x") == "train-00003.idx.partial"
    assert temporary_target(".tmp-out.old-4242") == "out"
    assert temporary_target("train-00003.idx") is None
