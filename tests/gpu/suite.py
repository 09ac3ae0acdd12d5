"""The GPU suite's driver (`bash tests/gpu/suite.sh OUTDIR [--rehearse]` runs it; see there).

`python -m tests.gpu.suite run OUTDIR --work DIR [--rehearse]` runs every step of `STEPS` in
order, each as `python -m tests.gpu.suite step NAME ...` in its own process group, killed at its
time limit. A step is a small function of a `Context` returning its numbers; what it saves with
`ctx.save(...)` on the way survives a kill. After each step `OUTDIR/suite.json` and
`OUTDIR/table.md` are rewritten, so a killed suite still leaves them.

Time: the whole suite has `SUITE_BUDGET_S` (9 minutes on a GPU, less the wheel install); a step
gets its own limit, cut so that every later step keeps its minimum. Throughput takes the biggest
share; inside it, bench runs go in priority order and the tail that does not fit is recorded as
skipped. `--rehearse` runs the same steps on a CPU at debug shapes (seq 128), a few steps each.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[2]
STATUSES = ("ok", "skipped", "failed", "timeout")
SUITE_BUDGET_S = {"gpu": 530, "rehearse": 900}


@dataclass(frozen=True)
class Shapes:
    """What a mode runs: the GPU's real shapes, or the rehearsal's debug ones."""

    models: dict[str, str]  # the name reported → the preset run
    seq_len: int
    micro_batch: int  # "micro-batch 8"
    largest_tries: tuple[int, ...]  # micro-batches tried after 8 for "the largest that fits"
    hf_micro_batch: int
    steps: int
    warmup: int
    parity: dict  # LlamaConfig fields of the tinyllama-shaped 2-layer parity model
    parity_batch: int
    real_path_steps: int
    real_path_overrides: tuple[str, ...]  # extra `slm pretrain` flags


TINYLLAMA_2_LAYERS = {"vocab_size": 32000, "dim": 2048, "n_layers": 2, "n_heads": 32,
                      "n_kv_heads": 4, "ffn_dim": 5632, "max_seq_len": 2048}
GPU = Shapes(models={"tinyllama-1.1b": "tinyllama-1.1b", "litellama-460m": "litellama-460m"},
             seq_len=2048, micro_batch=8, largest_tries=(16, 32), hf_micro_batch=4, steps=10,
             warmup=3, parity=TINYLLAMA_2_LAYERS, parity_batch=2, real_path_steps=20,
             real_path_overrides=())
# GQA 8:1 at head_dim 64 like the 1.1B, small enough for two cores.
REHEARSAL = Shapes(models={"tinyllama-1.1b": "debug-1m", "litellama-460m": "debug-100k"},
                   seq_len=128, micro_batch=8, largest_tries=(16,), hf_micro_batch=4, steps=2,
                   warmup=1, parity={"vocab_size": 4096, "dim": 512, "n_layers": 2, "n_heads": 8,
                                     "n_kv_heads": 1, "ffn_dim": 1408, "max_seq_len": 128},
                   parity_batch=2, real_path_steps=8,
                   real_path_overrides=("--trainer.accelerator", "cpu", "--model.preset", "debug-1m",
                                        "--data.num_workers", "0"))

# torch.compile on a shared 2-core CPU takes minutes per model (inductor's C++ builds), so a
# rehearsal runs the compiled options' code path uncompiled or skips them; `slm bench --compile`
# itself is tested on the CPU in tests/kernels/test_bench.py.
REHEARSAL_NO_COMPILE = "rehearsal: compiling on a 2-core CPU takes minutes (tests/kernels/test_bench.py covers it)"

# Throughput options in priority order: (name, bench flags).
OPTIONS = (("compiled+liger", ("--compile", "--fused-ops", "liger")),
           ("compiled+torch", ("--compile", "--fused-ops", "torch")),
           ("eager+liger", ("--fused-ops", "liger")),
           ("eager", ("--fused-ops", "none")),
           # float8 should beat bf16 on the 1.1B (issue #21); if not, the profile says why
           ("compiled+liger+fp8", ("--compile", "--fused-ops", "liger", "--fp8")))


class Context:
    def __init__(self, outdir: Path, work: Path, rehearse: bool, deadline: float, result_path: Path):
        self.outdir, self.work, self.rehearse, self.deadline = outdir, work, rehearse, deadline
        self.shapes = REHEARSAL if rehearse else GPU
        self._result_path = result_path
        self.saved: dict = {}

    def left_s(self) -> float:
        return self.deadline - time.time()

    def save(self, **numbers) -> None:
        """Keep these numbers even if the step is killed later."""
        self.saved.update(numbers)
        write_json(self._result_path, self.saved)

    def earlier(self, name: str) -> dict:
        """An earlier step's entry of suite.json ({} if it did not run)."""
        try:
            steps = json.loads((self.outdir / "suite.json").read_text())["steps"]
        except (OSError, ValueError, KeyError):
            return {}
        return next((s for s in steps if s["name"] == name), {})


def write_json(path: Path, value) -> None:
    tmp = path.with_name(f".tmp-{path.name}")
    tmp.write_text(json.dumps(value, indent=1, default=str))
    os.replace(tmp, path)


# Commands a step runs, each in its own process group: killed with the step (see run_step).
_CHILDREN: set[subprocess.Popen] = set()


def run_logged(command: list[str], timeout_s: float, **kwargs) -> subprocess.CompletedProcess:
    """Run a command (its output also to our log), killing its whole process group at timeout_s;
    returncode 124 on timeout, as coreutils' `timeout`."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True, cwd=ROOT, **kwargs)
    _CHILDREN.add(process)
    try:
        out, err = process.communicate(timeout=max(timeout_s, 1))
        code = process.returncode
    except subprocess.TimeoutExpired:
        kill_group(process)
        out, err = process.communicate()
        code = 124
    finally:
        _CHILDREN.discard(process)
    print(f"$ {' '.join(command)}  -> {code}", out[-4000:], err[-6000:], sep="\n", flush=True)
    return subprocess.CompletedProcess(command, code, out, err)


def kill_group(process: subprocess.Popen) -> None:
    for sig, wait_s in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def error_line(proc: subprocess.CompletedProcess) -> str:
    """The reason a command failed, in one line: its `error:` line, the exception, or the code."""
    lines = [line for line in (proc.stderr + proc.stdout).splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith("error:") or "Error" in line.split(":")[0]:
            return line.strip()[:300]
    return f"exit status {proc.returncode}"


def slm(*args: str) -> list[str]:
    return [sys.executable, "-m", "pretrain.cli", *args]


# ---- a. environment --------------------------------------------------------------------------

def step_environment(ctx: Context) -> dict:
    from importlib.metadata import distributions

    import torch

    from pretrain.training.metrics import PEAK_BF16_TFLOPS, peak_flops_of

    cuda = torch.cuda.is_available()
    name = torch.cuda.get_device_name(0) if cuda else "cpu (rehearsal)"
    peak = peak_flops_of(name) if cuda else None
    packages = {d.metadata["Name"].lower(): d.version for d in distributions() if d.metadata["Name"]}
    found = {"device_name": name, "device_count": torch.cuda.device_count() if cuda else 0,
             "peak_bf16_tflops": None if peak is None else peak / 1e12,
             "peak_table_tflops": PEAK_BF16_TFLOPS, "python": sys.version.split()[0],
             "torch": torch.__version__, "cuda": torch.version.cuda,
             "cudnn": torch.backends.cudnn.version() if cuda else None,
             "wheels": os.environ.get("SLM_SUITE_WHEELS", "not run through suite.sh"),
             "packages": dict(sorted(packages.items()))}
    if cuda:
        props = torch.cuda.get_device_properties(0)
        found.update(capability=f"{props.major}.{props.minor}", memory_gib=props.total_memory / 2**30,
                     multiprocessors=props.multi_processor_count)
        if peak is None:
            return {**found, "status": "failed", "reason": f"{name!r} is not in the peak table "
                    "(pretrain/training/metrics.py PEAK_BF16_TFLOPS): MFU would be missing"}
    elif not ctx.rehearse:
        return {**found, "status": "failed", "reason": "no CUDA device (use --rehearse on a CPU)"}
    return found


# ---- b. correctness --------------------------------------------------------------------------

def step_gpu_tests(ctx: Context) -> dict:
    import re

    proc = run_logged([sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-rfEs", "-p", "no:cacheprovider",
                       "tests"], timeout_s=ctx.left_s() - 5)
    summary = (proc.stdout.strip().splitlines() or [""])[-1]
    counts = {kind: int(n) for n, kind in re.findall(r"(\d+) (passed|failed|skipped|errors?|deselected)",
                                                      summary)}
    failing = [line.split(" ", 1)[1][:200] for line in proc.stdout.splitlines()
               if line.startswith(("FAILED ", "ERROR "))]
    result = {"summary": summary, **counts, "failing": failing, "returncode": proc.returncode}
    if proc.returncode == 124:
        return {**result, "status": "timeout"}
    if proc.returncode not in (0, 5):
        return {**result, "status": "failed", "reason": f"{len(failing)} failing: {summary}"}
    return result


PARITY_TOLERANCE = {"bf16": {"loss_rel": 1e-2, "grad_cosine": 0.99},
                    "float8": {"loss_rel": 2e-2, "grad_cosine": 0.9},
                    "fp32": {"loss_rel": 1e-4, "grad_cosine": 0.9999}}


def parity_cases(device) -> tuple[list[dict], list[dict]]:
    """(cases that can run here in the order they run, [{option, reason}] for what cannot)."""
    import itertools

    import torch

    from model.attention import backend_names
    from model.kernels.attention_backends import check_backend
    from model.kernels.cross_entropy import IMPLEMENTATIONS, resolve_implementation
    from model.kernels.fused_ops import resolve_fused_ops
    from pretrain.training.float8 import check_float8_device

    def reason(check: Callable) -> str | None:
        try:
            check()
        except Exception as e:  # a kernel that cannot run here: one line saying why
            return f"{e.__class__.__name__}: {str(e).splitlines()[0]}"
        return None

    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    q = torch.empty(1, 1, 8, 64, device=device, dtype=dtype, requires_grad=True)
    attention = [a for a in backend_names() if a not in ("auto", "eager")] + ["eager"]
    unavailable = {}
    for a in attention:
        unavailable[("attention", a)] = reason(lambda: check_backend(a, q))
    for o in ("none", "torch", "liger"):
        unavailable[("fused_ops", o)] = reason(lambda: resolve_fused_ops(o, device))
    ces = [c for c in IMPLEMENTATIONS if c != "auto"]
    for c in ces:
        unavailable[("fused_ce", c)] = reason(lambda: resolve_implementation(c, device) == "liger"
                                              and __import__("liger_kernel.transformers"))
    unavailable[("float8", True)] = reason(lambda: (check_float8_device(device, "float8"),
                                                    __import__("torchao.float8")))
    best_ops = next(o for o in ("liger", "torch", "none") if not unavailable[("fused_ops", o)])
    best_ce = next(c for c in ("liger", "chunked") if not unavailable[("fused_ce", c)])
    # Priority (a step limit cuts the tail): compiled with the best kernels, one-rank FSDP2 as the
    # GPU recipes train (uncompiled in a rehearsal: see REHEARSAL_NO_COMPILE), float8, then
    # every attention backend × fused ops × fused CE uncompiled, then the other compiled fused ops.
    best = dict(attention="auto", fused_ops=best_ops, fused_ce=best_ce)
    cases = [dict(best, compile=True), dict(best, compile=True, fsdp2=True),
             dict(best, float8=True), dict(best, float8=True, compile=True)]
    cases += [dict(attention=a, fused_ops=o, fused_ce=c)
              for a, o, c in itertools.product(attention, ("none", "torch", "liger"), ces)]
    cases += [dict(attention="auto", fused_ops=o, fused_ce=best_ce, compile=True)
              for o in ("liger", "torch", "none") if o != best_ops]
    runnable = []
    not_here = [{"option": f"{k}={v}", "reason": why} for (k, v), why in unavailable.items() if why]
    for case in cases:
        if any(unavailable.get((k, case[k])) for k in ("attention", "fused_ops", "fused_ce")) or (
                case.get("float8") and unavailable[("float8", True)]):
            continue  # its option is listed in not_here once, with the reason
        elif case.get("compile") and rehearsing():
            if case.get("fsdp2"):
                runnable.append(dict(case, compile=False))
            else:
                not_here.append({"option": case_name(case), "reason": REHEARSAL_NO_COMPILE})
        else:
            runnable.append(case)
    return runnable, not_here


def rehearsing() -> bool:
    return os.environ.get("SLM_SUITE_REHEARSE") == "1"


def case_name(case: dict) -> str:
    parts = [f"attention={case['attention']}", f"fused_ops={case['fused_ops']}", f"fused_ce={case['fused_ce']}"]
    parts += [flag for flag in ("compile", "float8", "fsdp2") if case.get(flag)]
    return " ".join(parts)


def parity_loss_and_grads(config, device, case: dict, batch: dict, dtype) -> tuple[float, dict]:
    """One forward + backward of `case`'s model (built as training builds it, seed 0)."""
    import torch

    from pretrain.bench import one_rank_mesh
    from pretrain.training.parallelize import KernelChoice, build_parallel_model, check_kernels
    from pretrain.training.step import causal_lm_loss

    if case.get("compile"):
        torch._dynamo.reset()  # each case compiles afresh, never hitting dynamo's recompile limit
    config = config.replace(attention_backend=case["attention"])
    fused_ce, ops = check_kernels(KernelChoice(case["attention"], case["fused_ce"], case["fused_ops"],
                                               bool(case.get("float8"))), config, device)
    mesh_context = one_rank_mesh(device) if case.get("fsdp2") else nullcontext()
    with mesh_context as mesh:
        model = build_parallel_model(config, device, mesh, init_seed=0, mixed_precision="bf16",
                                     fused_ops=ops, float8=bool(case.get("float8")),
                                     compile=bool(case.get("compile")))
        autocast = dtype != torch.float32 and not case.get("fsdp2")
        with torch.autocast(device.type, dtype=dtype, enabled=autocast):
            loss = causal_lm_loss(model, batch, fused_ce)
        loss.backward()
        grads = {}
        for name, p in model.named_parameters():
            g = p.grad.full_tensor() if hasattr(p.grad, "full_tensor") else p.grad
            grads[name] = g.detach().float().flatten()
    return loss.item(), grads


def step_parity(ctx: Context) -> dict:
    import torch
    import torch.nn.functional as F

    from model import LlamaConfig

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    shapes = ctx.shapes
    config = LlamaConfig(**shapes.parity)
    tokens = torch.randint(0, config.vocab_size, (shapes.parity_batch, shapes.seq_len + 1),
                           generator=torch.Generator().manual_seed(0)).to(device)
    batch = {"input_ids": tokens[:, :-1], "labels": tokens[:, 1:]}
    reference = dict(attention="eager", fused_ops="none", fused_ce="eager")
    want_loss, want = parity_loss_and_grads(config, device, reference, batch, torch.float32)
    runnable, not_here = parity_cases(device)
    ctx.save(shape={**shapes.parity, "batch": shapes.parity_batch, "seq_len": shapes.seq_len},
             reference="fp32, eager attention, unfused ops, full-logits cross-entropy, no compile",
             compute_dtype=str(dtype).removeprefix("torch."), tolerances=PARITY_TOLERANCE,
             reference_loss=want_loss, not_available=not_here, cases=[])
    cases, failures = [], 0
    for case in runnable:
        if ctx.left_s() < 15:
            not_here.append({"option": case_name(case), "reason": "not run: step time limit"})
            continue
        kind = "float8" if case.get("float8") else ("bf16" if dtype == torch.bfloat16 else "fp32")
        tolerance = PARITY_TOLERANCE[kind]
        started = time.perf_counter()
        try:
            loss, grads = parity_loss_and_grads(config, device, case, batch, dtype)
        except Exception as e:  # a kernel that breaks is a finding, not the end of the step
            cases.append({"case": case_name(case), "status": "failed",
                          "reason": f"{e.__class__.__name__}: {str(e).splitlines()[0][:300]}"})
            failures += 1
            continue
        cosines = {n: F.cosine_similarity(grads[n], want[n].to(grads[n].device), dim=0).item() for n in want}
        worst = min(cosines, key=cosines.get)
        loss_rel = abs(loss - want_loss) / abs(want_loss)
        ok = loss_rel <= tolerance["loss_rel"] and cosines[worst] >= tolerance["grad_cosine"]
        failures += not ok
        cases.append({"case": case_name(case), "status": "ok" if ok else "failed", "tolerance": kind,
                      "loss": loss, "loss_rel_err": loss_rel, "min_grad_cosine": cosines[worst],
                      "worst_param": worst, "seconds": round(time.perf_counter() - started, 1)})
        ctx.save(cases=cases, not_available=not_here)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    result = {"cases_ok": len(cases) - failures, "cases_failed": failures, "cases": cases,
              "not_available": not_here}
    if failures:
        result.update(status="failed", reason=f"{failures} of {len(cases)} cases outside tolerance")
    return result


# ---- c. throughput ---------------------------------------------------------------------------

def bench(ctx: Context, model: str, option: str, micro_batch: int, extra: tuple[str, ...] = (),
          cap_s: float = 150) -> dict:
    """One `slm bench --json` run: its report's numbers, or why there are none."""
    flags = dict(OPTIONS).get(option, ())
    preset = ctx.shapes.models[model]
    row = {"model": model, "preset": preset, "option": option, "micro_batch": micro_batch,
           "seq_len": ctx.shapes.seq_len, "accumulation": 1}
    timeout_s = min(cap_s, ctx.left_s() - 5)
    if timeout_s < 20:
        return {**row, "status": "skipped", "reason": "suite time budget"}
    started = time.perf_counter()
    proc = run_logged(slm("bench", "--model", preset, "--seq-len", str(ctx.shapes.seq_len),
                          "--micro-batch-size", str(micro_batch), "--accumulation", "1",
                          "--steps", str(ctx.shapes.steps), "--warmup", str(ctx.shapes.warmup),
                          *flags, *extra, "--json"), timeout_s)
    row["seconds"] = round(time.perf_counter() - started, 1)
    if proc.returncode == 124:  # cut by the step's time left: the priority list's tail, not a hang
        return {**row, "status": "timeout", "cut_by_budget": timeout_s < cap_s,
                "reason": f"killed after {timeout_s:.0f} s"}
    if proc.returncode != 0:
        oom = "OutOfMemoryError" in proc.stderr or "out of memory" in proc.stderr
        status = "oom" if oom else ("skipped" if proc.returncode == 2 else "failed")
        return {**row, "status": status, "reason": error_line(proc)}
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    times = report["step_time_s"]
    row.update(status="ok", tokens_per_s=report["tokens_per_s"], mfu=report["mfu"],
               step_p50_ms=times["p50"] * 1e3, step_p90_ms=times["p90"] * 1e3,
               peak_memory_gb=report["peak_memory_gb"], peak_memory_kind=report["peak_memory_kind"],
               attention=report["attention"], fused_ce=report["fused_ce"], fused_ops=report["fused_ops"],
               compile=report["compile"], strategy=report["strategy"], dtype=report["dtype"])
    if "hf" in report:
        row.update(hf_tokens_per_s=report["hf"]["tokens_per_s"], speedup_vs_hf=report["speedup_vs_hf"])
    return row


def option_runs_here(option: str) -> str | None:
    """Why a throughput option cannot run on this machine (None if it can), without a process."""
    import torch

    from model.kernels.fused_ops import resolve_fused_ops

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    flags = dict(OPTIONS)[option]
    from pretrain.training.float8 import check_float8_device

    try:
        resolve_fused_ops(flags[flags.index("--fused-ops") + 1], device)
        if "--fp8" in flags:
            check_float8_device(device, "--fp8")
            __import__("torchao.float8")
    except Exception as e:
        return f"{e.__class__.__name__}: {str(e).splitlines()[0]}"
    return None


def step_throughput(ctx: Context) -> dict:
    shapes = ctx.shapes
    rows: list[dict] = []

    def record(row: dict) -> dict:
        rows.append(row)
        ctx.save(rows=rows)
        return row

    models = list(shapes.models)
    options = [o for o, _ in OPTIONS]
    missing = {o: option_runs_here(o) for o in options}
    # Priority: the compiled options of both models at micro-batch 8, the eager baseline, float8
    # on the 1.1B, then the largest micro-batch that fits for each model's best option,
    # eager+liger, then HF.
    plan = [(m, o) for o in ("compiled+liger", "compiled+torch") for m in models]
    plan += [(m, "eager") for m in models] + [(models[0], "compiled+liger+fp8")]
    if ctx.rehearse:
        missing.update({o: missing[o] or REHEARSAL_NO_COMPILE for o in options if o.startswith("compiled")})
    for model, option in plan:
        if missing[option]:
            record({"model": model, "option": option, "micro_batch": shapes.micro_batch,
                    "seq_len": shapes.seq_len, "status": "skipped", "reason": missing[option]})
        else:
            record(bench(ctx, model, option, shapes.micro_batch))
    for model in models:
        best = best_row(rows, model)
        if best is None:
            continue
        for micro_batch in shapes.largest_tries:
            row = record(bench(ctx, model, best["option"], micro_batch))
            if row["status"] != "ok":
                break
    for model in models:
        option = "eager+liger"
        record({"model": model, "option": option, "micro_batch": shapes.micro_batch,
                "seq_len": shapes.seq_len, "status": "skipped", "reason": missing[option]} if missing[option]
               else bench(ctx, model, option, shapes.micro_batch))
    # HF at a micro-batch that fits: two training states of the 1.1B plus HF's fp32 logits are
    # close to 80 GB at micro-batch 8. Both uncompiled (HF's layers compile with graph breaks).
    best = best_row(rows, models[0])
    hf_option = "eager+liger" if best and "liger" in best["option"] else "eager"
    row = bench(ctx, models[0], hf_option, shapes.hf_micro_batch, extra=("--compare", "hf"))
    record({**row, "compare": "hf", "note": f"micro-batch {shapes.hf_micro_batch}: at 8 the two "
            "1.1B training states and HF's fp32 logits are close to 80 GB"})
    largest = {}
    for model in models:
        fits = [r["micro_batch"] for r in rows if r["model"] == model and r["status"] == "ok"
                and r.get("compare") is None]
        largest[model] = max(fits) if fits else None
    best_rows = {m: best_row(rows, m) for m in models}
    result = {"rows": rows, "largest_micro_batch_that_fits": largest,
              "best": {m: r and {k: r[k] for k in ("option", "micro_batch", "tokens_per_s", "mfu")}
                       for m, r in best_rows.items()}}
    bad = [r for r in rows if r["status"] == "failed" or (r["status"] == "timeout" and not r["cut_by_budget"])]
    if not any(r["status"] == "ok" for r in rows):
        result.update(status="failed", reason="no bench run succeeded")
    elif bad:
        result.update(status="failed", reason=f"{len(bad)} bench runs failed or timed out: "
                      + "; ".join(f"{r['model']} {r['option']} mb{r['micro_batch']}: "
                                  f"{r.get('reason', r['status'])}" for r in bad)[:600])
    return result


def best_row(rows: list[dict], model: str) -> dict | None:
    """The fastest ok row of `model` at the standard micro-batch (not an HF comparison)."""
    ok = [r for r in rows if r["model"] == model and r["status"] == "ok" and r.get("compare") is None]
    standard = [r for r in ok if r["micro_batch"] == min(r["micro_batch"] for r in ok)] if ok else []
    return max(standard, key=lambda r: r["tokens_per_s"]) if standard else None


# ---- d. the real path ------------------------------------------------------------------------

def write_random_shards(directory: Path, vocab_size: int, train_tokens: int, val_tokens: int) -> Path:
    """A prepared data directory of uniformly random tokens (documents of 2048), train and val."""
    import numpy as np

    from data.shard_writer import ShardWriter
    from data.shards import FORMAT, FORMAT_VERSION, token_dtype, token_dtype_name, write_manifest

    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    dtype_name = token_dtype_name(vocab_size)
    splits = {}
    for split, total in (("train", train_tokens), ("val", val_tokens)):
        writer = ShardWriter(directory, split, token_dtype(dtype_name), 1 << 22)
        lengths = np.full(total // 2048, 2048)
        writer.add(rng.integers(3, vocab_size, int(lengths.sum())), lengths)
        splits[split] = {"tokens": int(lengths.sum()), "documents": len(lengths), "shards": writer.finish()}
    write_manifest(directory, {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "tokenizer": {"path": None, "fingerprint": "random-tokens", "vocab_size": vocab_size,
                      "bos_id": 1, "eos_id": 2},
        "dtype": dtype_name, "bos": True, "eos": True, "config": {}, "splits": splits,
        "inputs": [], "skipped": {}})
    return directory


def step_real_path(ctx: Context) -> dict:
    import csv

    from model import LlamaConfig

    shapes = ctx.shapes
    recipe = ROOT / "configs" / "tinyllama-1.1b.yaml"
    preset = shapes.models["tinyllama-1.1b"]
    vocab = LlamaConfig.from_name(preset).vocab_size
    mb = shapes.micro_batch
    steps = shapes.real_path_steps
    data = write_random_shards(ctx.work / "shards", vocab, (steps + 4) * mb * shapes.seq_len, 8 * 2048)
    run_dir = ctx.work / "real-path-run"
    command = slm("pretrain", "--config", str(recipe), "--trainer.default_root_dir", str(run_dir),
                  "--trainer.devices", "1", "--trainer.max_steps", str(steps),
                  "--trainer.log_every_n_steps", str(max(1, steps // 4)), "--trainer.enable_progress_bar",
                  "false", "--model.warmup_steps", str(steps // 2),
                  "--data.sources", "null", "--data.path", str(data), "--data.seq_len", str(shapes.seq_len),
                  "--data.micro_batch_size", str(mb), "--data.global_batch_tokens", str(mb * shapes.seq_len),
                  "--data.val_every_n_steps", "100000", "--checkpoint.every_n_steps", "0",
                  "--checkpoint.milestone_every_tokens", "null", "--checkpoint.save_at_end", "false",
                  *shapes.real_path_overrides)
    ctx.save(command=" ".join(command[2:]), steps=steps, micro_batch=mb, seq_len=shapes.seq_len)
    proc = run_logged(command, timeout_s=ctx.left_s() - 50)  # the rest for bench --config
    if proc.returncode != 0:
        return {"status": "timeout" if proc.returncode == 124 else "failed", "reason": error_line(proc)}
    with open(run_dir / "metrics.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("tokens_per_s")]
    # the first logged interval holds compilation and the first data loads
    rates = [float(r["tokens_per_s"]) for r in rows[1:]] or [float(r["tokens_per_s"]) for r in rows]
    mfus = [float(r["mfu"]) for r in rows[1:] if r.get("mfu")]
    pretrain = {"tokens_per_s": statistics.median(rates) if rates else None,
                "mfu": statistics.median(mfus) if mfus else None, "logged_rows": len(rows),
                "final_loss": float(rows[-1]["loss"]) if rows else None}
    ctx.save(pretrain=pretrain)
    # bench of the very recipe, same seq_len and micro-batch, accumulation 1 (its default)
    bench_cmd = slm("bench", "--config", str(recipe), "--model", preset, "--seq-len", str(shapes.seq_len),
                    "--micro-batch-size", str(mb), "--steps", str(shapes.steps), "--warmup",
                    str(shapes.warmup), "--json")
    if ctx.rehearse:
        bench_cmd[-1:-1] = ["--device", "cpu"]
    proc = run_logged(bench_cmd, timeout_s=ctx.left_s() - 3)
    if proc.returncode != 0:
        return {"pretrain": pretrain, "status": "timeout" if proc.returncode == 124 else "failed",
                "reason": f"slm bench --config: {error_line(proc)}"}
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    result = {"pretrain": pretrain, "bench": {"tokens_per_s": report["tokens_per_s"], "mfu": report["mfu"],
                                              "compile": report["compile"], "fused_ops": report["fused_ops"],
                                              "fused_ce": report["fused_ce"], "attention": report["attention"]}}
    if pretrain["tokens_per_s"]:
        result["pretrain_over_bench"] = pretrain["tokens_per_s"] / report["tokens_per_s"]
    return result


# ---- e. profile ------------------------------------------------------------------------------

def step_profile(ctx: Context) -> dict:
    import torch
    from torch.profiler import ProfilerActivity, profile

    from model import LlamaConfig
    from pretrain.bench import BenchSettings, StepTimer, build_ours, one_rank_mesh

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    best = (ctx.earlier("throughput").get("best") or {}).get("tinyllama-1.1b")
    option = best["option"] if best else ("compiled+torch" if cuda else "eager")
    flags = dict(OPTIONS)[option]
    settings = BenchSettings(model=ctx.shapes.models["tinyllama-1.1b"], seq_len=ctx.shapes.seq_len,
                             micro_batch_size=ctx.shapes.micro_batch, compile="--compile" in flags,
                             fused_ops=flags[flags.index("--fused-ops") + 1], fp8="--fp8" in flags,
                             device=device.type)
    config = LlamaConfig.from_name(settings.model, attention_backend="auto")
    dtype = torch.bfloat16 if cuda else torch.float32
    with one_rank_mesh(device) if cuda else nullcontext() as mesh:
        model, loss_fn, kernels = build_ours(settings, config, device, mesh, dtype)
        timer = StepTimer("ours", model, loss_fn, config.vocab_size, settings, settings.seq_len,
                          device, None)  # CUDA: FSDP2's bf16 policy; CPU: fp32
        for _ in range(2):
            timer.step(timed=False)  # compile and autotune outside the profile
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
        with profile(activities=activities) as prof:
            for _ in range(3):
                timer.step(timed=True)
    events = prof.key_averages()
    if cuda:
        kernels_only = [e for e in events if getattr(e, "self_device_time_total", 0) > 0]
        key = "self_device_time_total"
    else:
        kernels_only = [e for e in events if e.self_cpu_time_total > 0]
        key = "self_cpu_time_total"
    total = sum(getattr(e, key) for e in kernels_only) or 1
    top = sorted(kernels_only, key=lambda e: getattr(e, key), reverse=True)[:15]
    rows = [{"name": e.key[:160], "self_ms_per_step": getattr(e, key) / 1e3 / 3, "calls": e.count,
             "percent": 100 * getattr(e, key) / total} for e in top]
    attention = [r["name"] for r in rows if any(w in r["name"].lower() for w in
                                                ("flash", "fmha", "attention", "sdpa", "cudnn"))]
    return {"setting": {"model": settings.model, "option": option, "micro_batch": settings.micro_batch_size,
                        "seq_len": settings.seq_len, **kernels},
            "time_kind": "CUDA kernel self time" if cuda else "CPU op self time (rehearsal)",
            "top": rows, "attention_kernels": attention, "step_ms": statistics.fmean(timer.step_times_s) * 1e3}


# ---- f. memory -------------------------------------------------------------------------------

def step_memory(ctx: Context) -> dict:
    rows = [r for r in ctx.earlier("throughput").get("rows", []) if r["status"] == "ok"
            and r.get("compare") is None]
    targets = {}
    for r in rows:  # one per (model, micro-batch): the best option's measured peak
        key = (r["model"], r["micro_batch"])
        if key not in targets or r["tokens_per_s"] > targets[key]["tokens_per_s"]:
            targets[key] = r
    if not targets:
        return {"status": "skipped", "reason": "no measured peak: the throughput step ran no bench"}
    results = []
    for (model, micro_batch), measured in sorted(targets.items()):
        command = slm("bench", "--model", measured["preset"], "--seq-len", str(measured["seq_len"]),
                      "--micro-batch-size", str(micro_batch), "--estimate-memory", "--devices", "1", "--json")
        if ctx.left_s() < 10:
            break
        proc = run_logged(command, timeout_s=min(60, ctx.left_s() - 3))
        if proc.returncode != 0:
            why = error_line(proc)
            if "--estimate-memory" in proc.stderr and "unrecognized" in proc.stderr:
                return {"status": "skipped", "rows": results,
                        "reason": "slm bench has no --estimate-memory here yet (issue #21 item 5)"}
            results.append({"model": model, "micro_batch": micro_batch, "status": "failed", "reason": why})
            continue
        predicted = json.loads(proc.stdout.strip().splitlines()[-1])
        predicted_gb = predicted["predicted_peak_bytes"] / 1e9
        results.append({"model": model, "micro_batch": micro_batch, "option": measured["option"],
                        "status": "ok", "predicted_peak_gb": predicted_gb,
                        "measured_peak_gb": measured["peak_memory_gb"],
                        "measured_kind": measured["peak_memory_kind"],
                        "predicted_over_measured": predicted_gb / measured["peak_memory_gb"]})
        ctx.save(rows=results)
    result = {"rows": results}
    if any(r["status"] != "ok" for r in results):
        result.update(status="failed", reason="; ".join(r["reason"] for r in results if r["status"] != "ok")[:600])
    return result


# ---- the steps, and the driver ---------------------------------------------------------------

@dataclass(frozen=True)
class Step:
    name: str
    run: Callable[[Context], dict]
    limit_s: int  # on a GPU
    min_s: int  # kept free for this step by the steps before it
    rehearse_limit_s: int


STEPS = (
    Step("environment", step_environment, 30, 10, 60),
    Step("gpu_tests", step_gpu_tests, 75, 30, 180),
    Step("parity", step_parity, 75, 30, 180),
    Step("throughput", step_throughput, 300, 60, 420),
    Step("real_path", step_real_path, 180, 140, 240),
    Step("profile", step_profile, 75, 40, 120),
    Step("memory", step_memory, 40, 15, 120),
)


def _killed(signum, frame) -> None:
    """SIGTERM from the driver at the step's limit: take the commands it runs down with it (a
    bench left running would hold the GPU's memory through the next steps)."""
    for child in list(_CHILDREN):
        try:
            os.killpg(child.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    raise SystemExit(124)


def run_step(name: str, result_path: Path, outdir: Path, work: Path, rehearse: bool, deadline: float) -> int:
    signal.signal(signal.SIGTERM, _killed)
    ctx = Context(outdir, work, rehearse, deadline, result_path)
    step = next(s for s in STEPS if s.name == name)
    try:
        result = step.run(ctx)
    except Exception as e:  # a bug in the step or what it drives: say what, keep what it saved
        import traceback

        traceback.print_exc()
        write_json(result_path, {**ctx.saved, "status": "failed",
                                 "reason": f"{e.__class__.__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"})
        return 1
    write_json(result_path, {**ctx.saved, **result, "status": result.get("status", "ok")})
    return 0


def run_suite(outdir: Path, work: Path, rehearse: bool) -> int:
    from tests.gpu.table import render_table

    started = time.time()
    deadline = started + SUITE_BUDGET_S["rehearse" if rehearse else "gpu"]
    suite = {"mode": "rehearse" if rehearse else "gpu", "command": "bash tests/gpu/suite.sh OUTDIR"
             + (" --rehearse" if rehearse else ""), "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
             "budget_s": deadline - started, "environment": {}, "steps": []}
    log = open(outdir / "suite.log", "a")
    env = {**os.environ, "SLM_SUITE_REHEARSE": "1" if rehearse else "0"}
    for index, step in enumerate(STEPS):
        reserve = sum(s.min_s for s in STEPS[index + 1:])
        limit = min(step.rehearse_limit_s if rehearse else step.limit_s, deadline - time.time() - reserve)
        entry = {"name": step.name}
        if limit < 5:
            entry.update(status="skipped", reason="no time left in the suite budget", seconds=0.0)
        else:
            result_path = work / f"{step.name}.json"
            result_path.unlink(missing_ok=True)
            log.write(f"\n===== step {step.name} (limit {limit:.0f} s) =====\n")
            log.flush()
            t0 = time.time()
            process = subprocess.Popen(
                [sys.executable, "-m", "tests.gpu.suite", "step", step.name, str(outdir), "--work", str(work),
                 "--result", str(result_path), "--deadline", str(t0 + limit - 5)]
                + (["--rehearse"] if rehearse else []),
                stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env, start_new_session=True)
            try:
                code = process.wait(timeout=limit)
            except subprocess.TimeoutExpired:
                kill_group(process)
                code = 124
            saved = json.loads(result_path.read_text()) if result_path.exists() else {}
            entry.update(saved)
            if code == 124:
                entry.update(status="timeout", reason=f"killed at its {limit:.0f} s limit")
            elif code != 0:
                entry.update(status="failed", reason=entry.get("reason") or
                             f"the step crashed (exit {code}); see suite.log")
            entry["seconds"] = round(time.time() - t0, 1)
        if step.name == "environment":
            suite["environment"] = {k: v for k, v in entry.items() if k not in ("name", "status", "seconds")}
        suite["steps"].append(entry)
        suite["wall_s"] = round(time.time() - started, 1)
        write_json(outdir / "suite.json", suite)
        (outdir / "table.md").write_text(render_table(suite))
        print(f"gpu suite: {step.name}: {entry['status']} ({entry['seconds']} s)"
              + (f" — {entry['reason']}" if entry.get("reason") else ""), file=sys.stderr, flush=True)
    log.close()
    print((outdir / "table.md").read_text())
    return 0 if all(s["status"] in ("ok", "skipped") for s in suite["steps"]) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.gpu.suite")
    parser.add_argument("mode", choices=["run", "step"])
    parser.add_argument("name", nargs="?")
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--result", type=Path)
    parser.add_argument("--deadline", type=float)
    parser.add_argument("--rehearse", action="store_true")
    args = parser.parse_args(argv)
    if args.mode == "step":
        return run_step(args.name, args.result, args.outdir, args.work, args.rehearse, args.deadline)
    if args.name is not None:  # `run OUTDIR`: argparse put OUTDIR in name
        args.outdir, args.name = Path(args.name), None
    return run_suite(args.outdir.resolve(), args.work, args.rehearse)


if __name__ == "__main__":
    sys.exit(main())
