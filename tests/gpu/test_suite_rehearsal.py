"""The GPU suite rehearsed end to end on this CPU (`bash tests/gpu/suite.sh OUTDIR --rehearse`):
every step runs in its own process and ends ok or skipped-with-a-reason, and suite.json holds
every field the GPU run fills in, table.md included."""

import json
import subprocess
from pathlib import Path

import pytest

from tests.gpu.suite import STEPS

ROOT = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory):
    outdir = tmp_path_factory.mktemp("gpu-suite")
    proc = subprocess.run(["bash", str(ROOT / "tests/gpu/suite.sh"), str(outdir), "--rehearse"],
                          capture_output=True, text=True, timeout=1500)
    return proc, outdir, json.loads((outdir / "suite.json").read_text())


@pytest.mark.slow
def test_rehearsal_runs_every_step_and_each_ends_ok_or_skipped_with_a_reason(rehearsal):
    proc, _, suite = rehearsal
    assert [s["name"] for s in suite["steps"]] == [s.name for s in STEPS]
    for step in suite["steps"]:
        assert step["status"] in ("ok", "skipped"), (step["name"], step.get("reason"), proc.stderr[-3000:])
        assert step["status"] == "ok" or step["reason"], step
        assert step["seconds"] >= 0
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.slow
def test_rehearsal_suite_json_holds_the_numbers_the_gpu_run_fills(rehearsal):
    _, _, suite = rehearsal
    steps = {s["name"]: s for s in suite["steps"]}
    env = suite["environment"]
    assert env["torch"] and env["python"] and "torch" in env["packages"] and env["wheels"]
    assert steps["gpu_tests"]["skipped"] >= 20 and "failed" not in steps["gpu_tests"]
    parity = steps["parity"]
    assert parity["cases"] and all(c["status"] == "ok" for c in parity["cases"])
    assert all(c["loss_rel_err"] <= 1e-4 and c["min_grad_cosine"] >= 0.9999 for c in parity["cases"])
    assert any("fsdp2" in c["case"] for c in parity["cases"])
    ok_rows = [r for r in steps["throughput"]["rows"] if r["status"] == "ok"]
    assert {r["model"] for r in ok_rows} == {"tinyllama-1.1b", "litellama-460m"}
    for row in ok_rows:
        assert row["tokens_per_s"] > 0 and row["step_p90_ms"] >= row["step_p50_ms"] > 0
        assert row["peak_memory_gb"] > 0 and "mfu" in row  # None on a CPU: no peak
    assert any(r.get("speedup_vs_hf", 0) > 0 for r in ok_rows)
    assert all(r["reason"] for r in steps["throughput"]["rows"] if r["status"] == "skipped")
    real = steps["real_path"]
    assert real["pretrain"]["tokens_per_s"] > 0 and real["bench"]["tokens_per_s"] > 0
    assert len(steps["profile"]["top"]) == 15
    assert steps["memory"]["status"] == "ok" or "estimate-memory" in steps["memory"]["reason"]


@pytest.mark.slow
def test_rehearsal_writes_a_readme_ready_table_with_every_step(rehearsal):
    _, outdir, suite = rehearsal
    table = (outdir / "table.md").read_text()
    for step in suite["steps"]:
        assert f"| {step['name']} | {step['status']} |" in table
    assert "| tinyllama-1.1b | eager | 8 |" in table
    assert "`slm pretrain` (configs/tinyllama-1.1b.yaml" in table
