"""`slm data curate --slurm` on the real single-node SLURM that tests/slurm starts: the passes
run as dependent job arrays and give the same files as a local run."""

import pytest

from tests.data.curate.conftest import recipe_file, write_jsonl
from tests.slurm.conftest import slurm_cluster  # noqa: F401  (the session's cluster)
from tests.slurm.jobs import run_slm, wait_for

# Few buckets and tasks: every array element is a process start on a 2-core test machine.
SMALL_DEDUP = "dedup:\n  exact: true\n  minhash: {n_grams: 5, buckets: 2, hashes_per_bucket: 4}\n"


def _records(count):
    from tests.fixtures.tokenizer import varied_documents

    docs = varied_documents(count * 3, seed=7)
    records = [{"text": "\n".join(docs[i:i + 3]), "id": i // 3} for i in range(0, len(docs), 3)]
    return records + [{"text": records[0]["text"], "id": "copy-of-0"}]


@pytest.mark.slurm
def test_slurm_run_writes_the_same_output_as_a_local_run(tmp_path, slurm_cluster):  # noqa: F811
    corpus = write_jsonl(tmp_path / "in.jsonl", _records(20))
    recipe = recipe_file(tmp_path, SMALL_DEDUP)
    common = ["data", "curate", "--input", corpus, "--recipe", recipe, "--tasks", "2"]
    run_slm(*common, "--output", tmp_path / "local")
    submitted = run_slm(*common, "--output", tmp_path / "slurm", "--slurm", "--partition",
                        "debug", "--time", "00:10:00", "--mem-per-cpu-gb", "1")
    assert "submitted" in submitted.stdout
    report = tmp_path / "slurm" / "report.json"
    try:
        wait_for(report.is_file, "the report job", timeout_s=600, interval_s=2.0)
    except AssertionError:
        logs = sorted((tmp_path / "slurm" / "work" / "slurm").rglob("*.out"))
        raise AssertionError("\n".join(p.read_text()[-1500:] for p in logs[-3:]))

    def files(out):
        return {p.name: p.read_bytes() for p in sorted((out / "data").glob("*.jsonl.zst"))}

    assert files(tmp_path / "slurm") == files(tmp_path / "local")
    assert len(files(tmp_path / "local")) == 2
