"""`build_cache`: a teacher's top-K log-probabilities for every training token of the shards.

Format and context windows: `pretrain.distill.cache_format`. The teacher reads each sample slot
of a token shard exactly as `data.StreamingTokenDataset.sample` yields it (same input ids, same
document ids when `document_masking`), in batches of `batch_size` slots taken from the start of
each shard; each batch's top-K is computed chunk by chunk over its tokens, so the teacher's
[tokens, vocab] logits never exist at once.

Determinism. The unit of work is one output shard, computed with fixed shapes (batches of
`batch_size` slots of the shard, the last one smaller) whatever the worker count; workers only
decide which process computes which shard, so the bytes do not depend on `workers` (nor, as
measured for our CPU kernels, on the threads per worker: 1 vs 2 gave the same bytes; a GEMM
that split its reduction by thread count would break that). What the bytes do depend on (teacher,
data, seq_len, K, document masking, batch size, compute dtype, device type) is recorded.

Resume and atomicity. Both files of an output shard are written under temporary names and
renamed when complete (`tokenizer.atomic`); a rerun with the same settings keeps the complete
shards and computes the rest; `manifest.json` is written last. The settings of an unfinished
cache are in `cache-progress.json`; a rerun with other settings is refused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from pretrain.distill import cache_format as fmt
from pretrain.errors import PretrainError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CacheJob:
    """What a cache is computed from; everything the bytes depend on."""

    teacher: str
    data: str
    top_k: int
    seq_len: int
    split: str = "train"
    batch_size: int = 8
    document_masking: bool = False
    device: str = "cpu"
    compute_dtype: str = "float32"
    chunk_rows: int = 1024


def topk_logprobs(hidden: torch.Tensor, weight: torch.Tensor, k: int, chunk_rows: int):
    """(log-probabilities [N, k] float32, ids [N, k] int64), sorted descending, of the head
    `hidden [N, D] @ weight.T` at temperature 1, `chunk_rows` tokens of logits at a time."""
    values, ids = [], []
    for start in range(0, hidden.shape[0], chunk_rows):
        logits = (hidden[start:start + chunk_rows] @ weight.T).float()
        top, top_ids = logits.topk(k, dim=-1, sorted=True)
        values.append(top - torch.logsumexp(logits, dim=-1, keepdim=True))
        ids.append(top_ids)
    return torch.cat(values), torch.cat(ids)


class _ShardComputer:
    """Holds the teacher and the data of one process; computes one output shard at a time."""

    def __init__(self, job: CacheJob, output: Path, id_dtype: np.dtype, teacher=None):
        from data import StreamingTokenDataset
        from pretrain.distill.teacher import load_teacher

        self.job, self.output, self.id_dtype = job, output, id_dtype
        dtype = getattr(torch, job.compute_dtype)
        self.teacher = teacher if teacher is not None else load_teacher(
            job.teacher, dtype=dtype, device=job.device)
        # Sequential, unshuffled: global sample g is slot g of the shards in order.
        self.dataset = StreamingTokenDataset(job.data, job.split, seq_len=job.seq_len,
                                             shuffle=False, document_ids=job.document_masking)
        self.first_sample = np.concatenate(
            [[0], np.cumsum(self.dataset.sources[0].index.shard_samples)]).tolist()

    def _batch(self, shard: int, slots: range) -> dict[str, torch.Tensor]:
        samples = []
        for slot in slots:
            location = self.dataset.locate(self.first_sample[shard] + slot)
            assert location == (0, shard, slot * self.job.seq_len), location  # data.index order
            samples.append(self.dataset.sample(self.first_sample[shard] + slot))
        return {key: torch.stack([s[key] for s in samples]).to(self.job.device)
                for key in samples[0]}

    @torch.no_grad()
    def compute(self, shard: int) -> dict:
        """Write output shard `shard` (both files, each all or nothing); return its manifest entry."""
        from tokenizer.atomic import atomic_file

        job = self.job
        entry = self.dataset.sources[0].shards[shard]
        n_slots = (self.first_sample[shard + 1] - self.first_sample[shard])
        names = fmt.logprobs_file(job.split, shard), fmt.ids_file(job.split, shard)
        digests = hashlib.sha256(), hashlib.sha256()
        weight = self.teacher.output.weight
        with atomic_file(self.output / names[0], "wb") as logprob_out, \
                atomic_file(self.output / names[1], "wb") as id_out:
            for start in range(0, n_slots, job.batch_size):
                batch = self._batch(shard, range(start, min(start + job.batch_size, n_slots)))
                hidden = self.teacher.forward_hidden(batch["input_ids"],
                                                     document_ids=batch.get("document_ids"))
                logprobs, ids = topk_logprobs(hidden.reshape(-1, hidden.shape[-1]), weight,
                                              job.top_k, job.chunk_rows)
                for out, digest, payload in (
                        (logprob_out, digests[0], logprobs.cpu().numpy().astype(fmt.LOGPROB_DTYPE)),
                        (id_out, digests[1], ids.cpu().numpy().astype(self.id_dtype))):
                    data = payload.tobytes()
                    out.write(data)
                    digest.update(data)
        return {"token_file": entry["file"], "rows": n_slots * job.seq_len,
                "logprobs_file": names[0], "ids_file": names[1],
                "logprobs_sha256": digests[0].hexdigest(), "ids_sha256": digests[1].hexdigest()}


_WORKER: _ShardComputer | None = None


def _init_worker(job: CacheJob, output: Path, id_dtype: np.dtype, threads: int,
                 device: str) -> None:
    global _WORKER
    torch.set_num_threads(threads)
    _WORKER = _ShardComputer(CacheJob(**{**asdict(job), "device": device}), output, id_dtype)


def _compute_in_worker(shard: int) -> dict:
    return _WORKER.compute(shard)


def _finished_entry(output: Path, job: CacheJob, shard: int, token_shard: dict, k_bytes: int):
    """The manifest entry of a shard finished by an earlier run, or None if it is not done."""
    rows = fmt.shard_rows(token_shard["tokens"], job.seq_len)
    names = fmt.logprobs_file(job.split, shard), fmt.ids_file(job.split, shard)
    sizes = rows * job.top_k * fmt.LOGPROB_DTYPE.itemsize, rows * job.top_k * k_bytes
    paths = [output / name for name in names]
    if not all(p.is_file() and p.stat().st_size == size for p, size in zip(paths, sizes)):
        return None
    from data.shards import sha256_file

    return {"token_file": token_shard["file"], "rows": rows, "logprobs_file": names[0],
            "ids_file": names[1], "logprobs_sha256": sha256_file(paths[0]),
            "ids_sha256": sha256_file(paths[1])}


def _identity(settings: dict) -> dict:
    """What must match for a rerun to continue or reuse a cache: the settings without the
    shard list and without paths (a moved data directory or teacher is still the same one)."""
    identity = {k: v for k, v in settings.items() if k != "shards"}
    for key in ("data", "teacher"):
        identity[key] = {k: v for k, v in identity.get(key, {}).items() if k != "path"}
    return identity


def _check_output(output: Path, settings: dict) -> dict | None:
    """The manifest if `output` already holds this cache; None to (re)start; PretrainError if
    it holds something else."""
    manifest_path, progress_path = output / fmt.MANIFEST, output / fmt.PROGRESS
    for path in (manifest_path, progress_path):
        if not path.is_file():
            continue
        recorded = json.loads(path.read_text())
        recorded = _identity(recorded.get("settings", recorded))
        wanted = _identity(settings)
        if recorded != wanted:
            differ = sorted(k for k in wanted.keys() | recorded.keys()
                            if wanted.get(k) != recorded.get(k))
            raise PretrainError(f"the output holds a teacher cache made with other settings "
                                f"({', '.join(differ)}); use a new --output ({output})")
        return json.loads(path.read_text()) if path == manifest_path else None
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise PretrainError(f"output exists and is not a teacher cache or an empty directory "
                            f"({output})")
    return None


def build_cache(job: CacheJob, output: str | os.PathLike, *, workers: int = 1,
                threads_per_worker: int | None = None) -> dict:
    """Compute the cache of `job` into `output` (resuming an unfinished one); return its manifest.

    `workers` processes (one GPU each on CUDA) compute whole shards; each runs CPU ops on
    `threads_per_worker` threads (default: cores // workers). Neither changes the bytes.

    Raises `PretrainError` for a missing or non-Llama teacher, a teacher whose vocabulary is not
    the shards', K outside [1, vocab], bad sizes, or an output holding something else.
    """
    from data import DataError
    from data.shards import read_manifest, split_shards
    from pretrain.distill.teacher import check_teacher_vocab, load_teacher, teacher_fingerprint
    from tokenizer.atomic import TMP_PREFIX, write_json_atomic

    if job.top_k < 1 or job.seq_len < 1 or job.batch_size < 1 or workers < 1:
        raise PretrainError("need --top-k, --seq-len, --batch-size and --workers >= 1 "
                            "(slm distill cache)")
    output = Path(output)
    try:
        data_manifest = read_manifest(job.data)
        token_shards = split_shards(data_manifest, job.split, job.data)
    except DataError as e:
        raise PretrainError(str(e)) from None
    teacher = load_teacher(job.teacher, dtype=getattr(torch, job.compute_dtype), device=job.device)
    vocab_size = teacher.config.vocab_size
    check_teacher_vocab(job.teacher, job.data, teacher_vocab_size=vocab_size)
    if job.top_k > vocab_size:
        raise PretrainError(f"--top-k {job.top_k} exceeds the teacher's vocabulary of "
                            f"{vocab_size} ids (--top-k)")
    if job.seq_len > teacher.config.max_seq_len:
        raise PretrainError(f"--seq-len {job.seq_len} exceeds the teacher's max_seq_len "
                            f"{teacher.config.max_seq_len} (--seq-len)")
    id_name = fmt.id_dtype_name(vocab_size)
    settings = {
        "format": fmt.FORMAT, "format_version": fmt.FORMAT_VERSION, "split": job.split,
        "seq_len": job.seq_len, "top_k": job.top_k, "document_masking": job.document_masking,
        "logprob_dtype": "float16", "id_dtype": id_name, "compute_dtype": job.compute_dtype,
        "device_type": torch.device(job.device).type, "batch_size": job.batch_size,
        "data": {"path": str(Path(job.data).resolve()),
                 "fingerprint": fmt.data_fingerprint(data_manifest, job.split),
                 "tokenizer_fingerprint": data_manifest["tokenizer"]["fingerprint"]},
        "teacher": {"path": str(Path(job.teacher).resolve()),
                    "fingerprint": teacher_fingerprint(teacher), "vocab_size": vocab_size},
        "bytes_per_token": job.top_k * (fmt.LOGPROB_DTYPE.itemsize + fmt.id_dtype(id_name).itemsize),
    }
    done = _check_output(output, settings)
    if done is not None:
        log.info("teacher cache already complete (%s)", output / fmt.MANIFEST)
        return done
    output.mkdir(parents=True, exist_ok=True)
    for leftover in output.glob(f"{TMP_PREFIX}*"):  # a killed run's half-written shard
        leftover.unlink()
    write_json_atomic(output / fmt.PROGRESS, {"settings": settings})

    k_bytes = fmt.id_dtype(id_name).itemsize
    entries = [_finished_entry(output, job, n, s, k_bytes) for n, s in enumerate(token_shards)]
    pending = [n for n, entry in enumerate(entries) if entry is None]
    log.info("teacher cache: %d of %d shards to compute, %d bytes per token (%s)",
             len(pending), len(entries), settings["bytes_per_token"], output)
    threads = threads_per_worker or max(1, (os.cpu_count() or 1) // workers)
    for shard, entry in zip(pending, _compute(job, output, pending, workers, threads, teacher,
                                              fmt.id_dtype(id_name))):
        entries[shard] = entry
        log.info("teacher cache: shard %d done (%s)", shard, entry["logprobs_file"])
    manifest = {**settings, "shards": entries}
    write_json_atomic(output / fmt.MANIFEST, manifest)
    (output / fmt.PROGRESS).unlink()
    return manifest


def _compute(job, output, pending, workers, threads, teacher, id_dtype):
    """Manifest entries of the `pending` shards, in order, from 1 (in process) or N processes."""
    if workers == 1 or len(pending) <= 1:
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            computer = _ShardComputer(job, output, id_dtype, teacher=teacher)
            for shard in pending:
                yield computer.compute(shard)
        finally:
            torch.set_num_threads(previous)
        return
    device = torch.device(job.device)
    gpus = torch.cuda.device_count() if device.type == "cuda" else 0
    # spawn, not fork: a forked copy of a process with torch's thread pools can hang
    context = multiprocessing.get_context("spawn")
    pools = []
    for worker in range(workers):
        worker_device = f"cuda:{worker % gpus}" if gpus else job.device
        pools.append(context.Pool(1, _init_worker,
                                  (job, output, id_dtype, threads, worker_device)))
    try:
        # shard i goes to worker i % workers; results are taken back in shard order
        results = [pools[i % workers].apply_async(_compute_in_worker, (shard,))
                   for i, shard in enumerate(pending)]
        for result in results:
            yield result.get()
    finally:
        for pool in pools:
            pool.terminate()
            pool.join()
