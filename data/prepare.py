"""`prepare`: corpus files -> packed token shards + `manifest.json` (format: `data.shards`).

Documents come from `tokenizer.corpus` (the one set of corpus readers) in input order; each
becomes ``[BOS] ids EOS`` (BOS per `bos`, EOS always: it is what separates packed documents).

Parallelism: the main process reads documents and cuts them into chunks; `workers` processes
tokenise chunks; results are taken back in submission order, so the shards and the manifest
are byte-identical for any worker count.

Validation split, by document and independent of seed and workers: with `val_fraction` F a
document goes to ``val`` when the first 8 bytes of blake2b(its UTF-8 text) read as a fraction
are below F (so exact duplicates always land in the same split); with `val_docs` N the first N
documents of the corpus (in input order) go to ``val``.

Resume: after each input file the shard writers are checkpointed into
``prepare-progress.json`` (atomically). A rerun with the same inputs and settings skips the
finished inputs, truncates the open shard to the checkpoint and continues; the result equals
an uninterrupted run. The manifest is written last and the progress file then removed.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import multiprocessing
from collections import Counter, deque
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from data import DataError
from data.shard_writer import ShardWriter
from data.shards import (FORMAT, FORMAT_VERSION, MANIFEST, SPLITS, json_bytes, token_dtype,
                         token_dtype_name, write_manifest)
from tokenizer.atomic import temporary_target, write_atomic

log = logging.getLogger(__name__)

PROGRESS = "prepare-progress.json"
DEFAULT_SHARD_TOKENS = 1 << 27  # 256 MiB of uint16 per shard; 22k shards for 3T tokens
_CHUNK_DOCUMENTS = 1024
_CHUNK_CHARACTERS = 4 << 20
_HASH_SCALE = float(1 << 64)


def prepare(inputs: Iterable[str | Path], tokenizer_dir: str | Path, output: str | Path, *,
            text_key: str = "text", exclude_sets: Iterable[str] = (), bos: bool = True,
            shard_tokens: int = DEFAULT_SHARD_TOKENS, workers: int = 1,
            val_fraction: float = 0.0, val_docs: int = 0, skip_bad_lines: bool = False,
            overwrite: bool = False, progress_bar: bool = True) -> dict:
    """Tokenise `inputs` into `output`; returns the manifest (also when already complete).

    Raises DataError for bad settings, an output dir prepared with another tokenizer or other
    settings (unless `overwrite`), or a non-empty foreign output dir; CorpusError/
    TokenizerError (from `tokenizer`) for bad inputs. On error nothing is marked complete.
    """
    from tokenizer import load
    from tokenizer.corpus import expand_inputs

    if shard_tokens < 2 or workers < 1 or val_docs < 0 or not 0.0 <= val_fraction < 1.0:
        raise DataError("need --shard-tokens >= 2, --workers >= 1, --val-docs >= 0 and "
                        "0 <= --val-fraction < 1")
    if val_fraction and val_docs:
        raise DataError("give --val-fraction or --val-docs, not both")
    files = expand_inputs(inputs)
    tokenizer = load(tokenizer_dir)
    output = Path(output)
    config = {
        "inputs": [{"path": str(f.resolve()), "bytes": f.stat().st_size} for f in files],
        "text_key": text_key, "exclude_sets": sorted(set(exclude_sets)), "bos": bool(bos),
        "eos": True, "shard_tokens": int(shard_tokens), "val_fraction": float(val_fraction),
        "val_docs": int(val_docs), "tokenizer_fingerprint": tokenizer.fingerprint,
    }
    state = _open_output(output, config, overwrite)
    if state is not None and "manifest" in state:
        log.info("already prepared with these inputs and settings (%s)", output / MANIFEST)
        return state["manifest"]
    dtype = token_dtype(token_dtype_name(tokenizer.vocab_size))
    state = state or {"inputs_done": [], "writers": {}, "documents_seen": 0}
    writers = {split: ShardWriter(output, split, dtype, shard_tokens, state["writers"].get(split))
               for split in SPLITS}
    _save_progress(output, config, state, writers)  # from now on the directory is resumable
    encoder = _Encoder(str(tokenizer.model_file), bos, val_fraction > 0)
    pool = (multiprocessing.Pool(workers, initializer=_init_worker, initargs=(encoder,))
            if workers > 1 else None)
    bar = _progress_bar(progress_bar, len(files), len(state["inputs_done"]))
    try:
        for file in files[len(state["inputs_done"]):]:
            skips: Counter = Counter()
            stats = {"path": str(file.resolve()), "bytes": file.stat().st_size, "documents": 0,
                     "tokens": 0, "val_documents": 0}
            documents = _read(file, text_key, skip_bad_lines, skips, config["exclude_sets"])
            for tokens, lengths, hashes in _encoded_chunks(documents, encoder, pool, workers):
                to_val = _validation_mask(len(lengths), hashes, state["documents_seen"],
                                          val_fraction, val_docs)
                state["documents_seen"] += len(lengths)
                token_to_val = np.repeat(to_val, lengths)
                writers["val"].add(tokens[token_to_val], lengths[to_val])
                writers["train"].add(tokens[~token_to_val], lengths[~to_val])
                stats["documents"] += len(lengths)
                stats["tokens"] += len(tokens)
                stats["val_documents"] += int(to_val.sum())
                bar.set_postfix_str(f"{file.name}: {stats['documents']} docs", refresh=False)
            stats["skipped"] = dict(sorted(skips.items()))
            state["inputs_done"].append(stats)
            _save_progress(output, config, state, writers)
            bar.update(1)
        shards = {split: w.finish() for split, w in writers.items()}
    finally:
        bar.close()
        if pool is not None:
            pool.terminate()
        for writer in writers.values():
            writer.close()
    manifest = _manifest(tokenizer, tokenizer_dir, config, shards, state["inputs_done"])
    write_manifest(output, manifest)
    (output / PROGRESS).unlink()
    return manifest


def _save_progress(output: Path, config: dict, state: dict, writers: dict) -> None:
    state["writers"] = {split: writer.checkpoint() for split, writer in writers.items()}
    write_atomic(output / PROGRESS, json_bytes({"config": config, **state}))


def _read(file: Path, text_key, skip_bad_lines, skips, exclude_sets) -> Iterator[str]:
    from tokenizer.corpus import iter_documents

    return iter_documents(file, text_key=text_key, skip_bad_lines=skip_bad_lines, skips=skips,
                          exclude_sets=exclude_sets)


def _open_output(output: Path, config: dict, overwrite: bool) -> dict | None:
    """None for a fresh start, the saved progress to resume, or {"manifest": m} when done."""
    manifest_path, progress_path = output / MANIFEST, output / PROGRESS
    ours = manifest_path.exists() or progress_path.exists()
    if output.exists() and not output.is_dir():
        raise DataError(f"output is not a directory ({output})")
    if output.is_dir() and any(output.iterdir()) and not ours:
        raise DataError(f"output directory is not empty and holds no prepared data; choose "
                        f"another --output ({output})")
    if ours and overwrite:
        _remove_prepared_files(output)
        return None
    output.mkdir(parents=True, exist_ok=True)
    if not ours:
        return None
    path = manifest_path if manifest_path.exists() else progress_path
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        saved_config = saved["config"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
        raise DataError(f"corrupt {path.name}; rerun with --overwrite ({path})") from None
    if saved_config.get("tokenizer_fingerprint") != config["tokenizer_fingerprint"]:
        raise DataError(f"the output was prepared with a different tokenizer (fingerprint "
                        f"{str(saved_config.get('tokenizer_fingerprint'))[:12]}... != "
                        f"{config['tokenizer_fingerprint'][:12]}...); use --overwrite or "
                        f"another --output ({path})")
    changed = sorted(k for k in set(config) | set(saved_config)
                     if config.get(k) != saved_config.get(k))
    if changed:
        raise DataError(f"the output was prepared with different settings "
                        f"({', '.join(changed)} differ); use --overwrite or another --output "
                        f"({path})")
    if path == manifest_path:
        return {"manifest": saved}
    log.info("resuming: %d of %d inputs already done (%s)", len(saved["inputs_done"]),
             len(config["inputs"]), progress_path)
    _remove_prepared_files(output, only_temporaries=True)  # a kill mid-write leaves them
    return {k: saved[k] for k in ("inputs_done", "writers", "documents_seen")}


def _remove_prepared_files(output: Path, only_temporaries: bool = False) -> None:
    """Delete what `prepare` writes in `output` (with `only_temporaries`: just the temporaries
    of those files that a kill left behind)."""
    for path in output.iterdir():
        target = temporary_target(path.name)
        if only_temporaries and target is None:
            continue
        name = target or path.name
        split = name.split("-", 1)[0]
        if name in (MANIFEST, PROGRESS) or (split in SPLITS and (".bin" in name or ".idx" in name)):
            path.unlink()


class _Encoder:
    """Tokenises a chunk of documents; built once per worker process (picklable recipe)."""

    def __init__(self, model_file: str, bos: bool, with_hashes: bool):
        self.model_file, self.bos, self.with_hashes = model_file, bos, with_hashes
        self._tokenizer = None

    def __getstate__(self):
        return {**self.__dict__, "_tokenizer": None}

    def __call__(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        if self._tokenizer is None:
            from tokenizer import load

            self._tokenizer = load(self.model_file, num_threads=1)  # one core per worker
        ids = self._tokenizer.encode_batch(texts, bos=self.bos, eos=True)
        lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
        tokens = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.uint32,
                             count=int(lengths.sum()))
        hashes = None
        if self.with_hashes:
            hashes = np.array([int.from_bytes(hashlib.blake2b(t.encode(), digest_size=8).digest(),
                                              "little") for t in texts], dtype=np.uint64)
        return tokens, lengths, hashes


_WORKER_ENCODER: _Encoder | None = None


def _init_worker(encoder: _Encoder) -> None:
    global _WORKER_ENCODER
    _WORKER_ENCODER = encoder


def _encode_in_worker(texts: list[str]):
    return _WORKER_ENCODER(texts)


def _chunks(documents: Iterator[str]) -> Iterator[list[str]]:
    chunk, characters = [], 0
    for text in documents:
        chunk.append(text)
        characters += len(text)
        if len(chunk) >= _CHUNK_DOCUMENTS or characters >= _CHUNK_CHARACTERS:
            yield chunk
            chunk, characters = [], 0
    if chunk:
        yield chunk


def _encoded_chunks(documents: Iterator[str], encoder: _Encoder, pool, workers: int):
    """Encoded chunks in document order; at most 2 chunks in flight per worker."""
    if pool is None:
        yield from map(encoder, _chunks(documents))
        return
    pending: deque = deque()
    for chunk in _chunks(documents):
        pending.append(pool.apply_async(_encode_in_worker, (chunk,)))
        if len(pending) >= 2 * workers:
            yield pending.popleft().get()
    while pending:
        yield pending.popleft().get()


def _validation_mask(count: int, hashes, documents_seen: int, val_fraction: float,
                     val_docs: int) -> np.ndarray:
    if val_fraction:
        return hashes.astype(np.float64) / _HASH_SCALE < val_fraction
    return np.arange(documents_seen, documents_seen + count) < val_docs


def _progress_bar(enabled: bool, total: int, done: int):
    from tqdm import tqdm

    # disable=None: drawn only on a terminal, so logs and error output stay clean.
    return tqdm(total=total, initial=done, unit="file", desc="prepare",
                disable=None if enabled else True)


def _manifest(tokenizer, tokenizer_dir, config: dict, shards: dict, inputs: list[dict]) -> dict:
    skipped: Counter = Counter()
    for entry in inputs:
        skipped.update(entry["skipped"])
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "tokenizer": {"path": str(Path(tokenizer_dir).resolve()),
                      "fingerprint": tokenizer.fingerprint, "vocab_size": tokenizer.vocab_size,
                      "bos_id": tokenizer.bos_id, "eos_id": tokenizer.eos_id},
        "dtype": token_dtype_name(tokenizer.vocab_size), "bos": config["bos"], "eos": True,
        "config": config,
        "splits": {split: {"tokens": sum(s["tokens"] for s in shards[split]),
                           "documents": sum(s["documents"] for s in shards[split]),
                           "shards": shards[split]} for split in SPLITS},
        "inputs": inputs, "skipped": dict(sorted(skipped.items())),
    }
