"""`slm data bench`: how fast the stream reads and how fast prepare tokenises, on one core.

Stream figures are single-process (the per-core rate: DataLoader workers multiply it) and
read shards that are in the page cache after the first pass, as in steady-state training.
Each rate is given per wall-clock second and per CPU second (this process and its workers):
on a shared machine only the second says what one core does.
"""

from __future__ import annotations

import datetime
import platform
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from data.shards import open_tokens, read_manifest, token_dtype


def cpu_model() -> str:
    """The CPU model name (as lscpu reports it), else the platform's processor string."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_seconds() -> float:
    """CPU time of this process plus its finished child processes (prepare workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


class _Timer:
    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), _cpu_seconds()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.wall, _cpu_seconds() - self.cpu

    def rates(self, count: float, unit: str) -> dict:
        return {f"{unit}_per_s": count / self.wall, f"{unit}_per_cpu_s": count / self.cpu}


def bench_memmap(directory: Path, seconds: float = 1.0) -> dict:
    """Raw sequential memmap read rate: tokens copied out of the train shards per second."""
    manifest = read_manifest(directory)
    dtype = token_dtype(manifest["dtype"])
    shards = [open_tokens(directory, s, dtype) for s in manifest["splits"]["train"]["shards"][:64]]
    block, tokens = 1 << 20, 0
    with _Timer() as timer:
        began = time.perf_counter()
        while time.perf_counter() - began < seconds:
            for shard in shards:
                for start in range(0, len(shard), block):
                    tokens += shard[start:start + block].astype(np.int64).size
                if time.perf_counter() - began >= seconds:
                    break
    return timer.rates(tokens, "tokens")


def bench_stream(directory: Path, seq_len: int, samples: int, document_ids: bool) -> dict:
    """Samples per second through StreamingTokenDataset (shuffled order, in-process)."""
    from data.dataset import StreamingTokenDataset

    dataset = StreamingTokenDataset(directory, seq_len=seq_len, document_ids=document_ids)
    stream = iter(dataset)
    next(stream)  # opens the first shard
    with _Timer() as timer:
        for _ in range(samples):
            next(stream)
    return {**timer.rates(samples, "samples"), **timer.rates(samples * seq_len, "tokens"),
            "seq_len": seq_len, "document_ids": document_ids}


def bench_prepare(directory: Path, workers: int, max_inputs: int) -> dict:
    """Re-prepare the first `max_inputs` recorded inputs with the recorded tokenizer (temp dir)."""
    from data.prepare import prepare

    manifest = read_manifest(directory)
    inputs = [Path(entry["path"]) for entry in manifest["config"]["inputs"][:max_inputs]]
    tokenizer_path = manifest["tokenizer"]["path"]
    missing = [str(p) for p in inputs + [Path(str(tokenizer_path))] if not p.exists()]
    if missing:
        return {"skipped": f"inputs or tokenizer no longer exist: {missing[0]}"}
    with tempfile.TemporaryDirectory() as scratch, _Timer() as timer:
        result = prepare(inputs, tokenizer_path, Path(scratch) / "out", workers=workers,
                         bos=manifest["bos"], text_key=manifest["config"]["text_key"],
                         progress_bar=False)
    tokens = sum(result["splits"][s]["tokens"] for s in result["splits"])
    input_bytes = sum(entry["bytes"] for entry in result["inputs"])
    return {"workers": workers, "inputs": len(inputs), "tokens": tokens,
            "seconds": timer.wall, "cpu_seconds": timer.cpu, **timer.rates(tokens, "tokens"),
            "input_mb_per_s": input_bytes / timer.wall / 1e6}


def run_bench(directory: str | Path, *, seq_len: int = 2048, samples: int = 2000,
              prepare_workers: int = 1, prepare_inputs: int = 1, with_prepare: bool = True) -> dict:
    directory = Path(directory)
    return {
        "device": cpu_model(), "date": datetime.datetime.now(datetime.timezone.utc)
        .strftime("%Y-%m-%d %H:%M UTC"),
        "memmap": bench_memmap(directory),
        "stream": bench_stream(directory, seq_len, samples, document_ids=False),
        "stream_document_ids": bench_stream(directory, seq_len, samples, document_ids=True),
        "prepare": (bench_prepare(directory, prepare_workers, prepare_inputs)
                    if with_prepare else {"skipped": "--no-prepare"}),
    }


def format_bench(result: dict) -> str:
    def rate(entry: dict) -> str:
        return (f"{entry['tokens_per_s'] / 1e6:9.2f} M tokens/s "
                f"({entry['tokens_per_cpu_s'] / 1e6:.2f} M per CPU second)")

    lines = [f"device: {result['device']}, {result['date']}; stream figures: 1 process",
             f"{'memmap read:':<23} {rate(result['memmap'])}"]
    for key, label in (("stream", "stream"), ("stream_document_ids", "stream + document_ids")):
        s = result[key]
        lines.append(f"{label + ':':<23} {rate(s)}, seq_len {s['seq_len']}")
    p = result["prepare"]
    if "skipped" in p:
        lines.append(f"prepare: skipped ({p['skipped']})")
    else:
        lines.append(f"{'prepare:':<23} {rate(p)}; {p['workers']} worker(s), "
                     f"{p['tokens']:,} tokens from {p['inputs']} input(s) in "
                     f"{p['seconds']:.1f} s")
    return "\n".join(lines)
