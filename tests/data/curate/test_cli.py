"""`slm data curate` on the command line: user mistakes are one `error:` line before any work;
a run prints the per-stage table; a killed run resumes to the uninterrupted output."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.data.curate.conftest import recipe_file, write_jsonl
from tests.user_errors import assert_user_error

CONFIGS = Path(__file__).resolve().parents[3] / "configs" / "curate"


def test_unknown_filter_is_one_error_line_and_no_output(tmp_path, slm, corpus_files):
    recipe = recipe_file(tmp_path, "filters:\n  - sparkle: {}\n")
    proc = slm("data", "curate", "--input", corpus_files.paths[0], "--recipe", recipe,
               "--output", tmp_path / "out")
    assert_user_error(proc, "unknown filter 'sparkle'", str(recipe))
    assert not (tmp_path / "out").exists()


def test_missing_input_is_one_error_line_and_no_output(tmp_path, slm):
    proc = slm("data", "curate", "--input", tmp_path / "missing.jsonl", "--recipe",
               CONFIGS / "dedup.yaml", "--output", tmp_path / "out")
    assert_user_error(proc, "no such file or directory", "missing.jsonl")
    assert not (tmp_path / "out").exists()


def test_band_recipe_without_reference_model_is_one_error_line(tmp_path, slm, corpus_files,
                                                               trained_tokenizer):
    recipe = recipe_file(tmp_path, f"band:\n  tokenizer: {trained_tokenizer}\n")
    proc = slm("data", "curate", "--input", corpus_files.paths[0], "--recipe", recipe,
               "--output", tmp_path / "out")
    assert_user_error(proc, "--reference-model")


def test_output_of_another_run_is_refused_without_overwrite(tmp_path, slm, corpus_files):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    proc = slm("data", "curate", "--input", corpus_files.paths[0], "--recipe",
               CONFIGS / "dedup.yaml", "--output", out)
    assert_user_error(proc, "--overwrite", str(out))
    assert (out / "keep.txt").read_text() == "mine"


def _records(count):
    from tests.fixtures.tokenizer import varied_documents

    docs = varied_documents(count * 3, seed=5)
    return [{"text": "\n".join(docs[i:i + 3]), "id": i // 3} for i in range(0, len(docs), 3)]


def _data_bytes(out):
    return {p.name: p.read_bytes() for p in sorted((out / "data").glob("*.jsonl.zst"))}


@pytest.mark.slow
def test_a_killed_run_resumes_to_the_uninterrupted_output(tmp_path, slm):
    corpus = write_jsonl(tmp_path / "in.jsonl", _records(60))
    args = ["data", "curate", "--input", corpus, "--recipe", CONFIGS / "dedup.yaml",
            "--tasks", "3"]
    whole = slm(*args, "--output", tmp_path / "whole")
    assert whole.returncode == 0, whole.stderr
    assert "near_dedup" in whole.stdout

    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "pretrain.cli", *map(str, args),
                             "--output", str(out)], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    markers = out / "work" / "logs" / "minhash-buckets" / "completions"
    while proc.poll() is None and len(list(markers.glob("*"))) < 5:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "report.json").exists()

    resumed = slm(*args, "--output", out)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stderr
    assert _data_bytes(out) == _data_bytes(tmp_path / "whole")


def test_a_bad_record_is_an_error_naming_file_and_line_and_leaves_no_output(tmp_path, slm):
    corpus = tmp_path / "in.jsonl"
    corpus.write_text('{"text": "one fine document here", "id": 1}\nnot json\n')
    proc = slm("data", "curate", "--input", corpus, "--recipe", CONFIGS / "dedup.yaml",
               "--output", tmp_path / "out", "--tasks", "1")
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if not line.startswith("curate [")]
    assert errors == [f"error: not JSON ({corpus}:2); --skip-bad-lines skips such records"]
    assert not (tmp_path / "out").exists()


def test_an_edited_input_is_not_resumed_into_an_old_run(tmp_path, slm):
    corpus = write_jsonl(tmp_path / "in.jsonl", _records(4))
    args = ["data", "curate", "--input", corpus, "--recipe", CONFIGS / "dedup.yaml",
            "--output", tmp_path / "out", "--tasks", "1"]
    assert slm(*args).returncode == 0
    write_jsonl(corpus, _records(5))
    assert_user_error(slm(*args), "another recipe, inputs or task count", "--overwrite")
