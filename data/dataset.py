"""`StreamingTokenDataset`: prepared shards -> deterministic, resumable, mixed training samples.

Global order. Sample g of the stream (over all epochs) is fixed by (seed, g) alone: the mixture
(`data.mixing`) picks its source and the source's own sample index, the split index
(`data.index`) picks shard and offset. Training step s with a global batch of G samples
consumes samples ``[s·G, (s+1)·G)``.

Samples pack documents back to back (TinyLlama's choice): labels are not masked where one
document ends and the next begins; ask for ``document_ids`` to keep attention within documents.

Split across ranks and workers. The stream is cut into micro-batches of `micro_batch_size`
(B) samples; global micro-batch k is samples ``[k·B, (k+1)·B)`` and goes to rank ``k % W``
(W = world size). So rank r's j-th micro-batch is ``k = j·W + r``, and with A accumulation
steps global step s is exactly micro-batches ``[s·A·W, (s+1)·A·W)``. PyTorch's DataLoader
(batch_size=B) takes whole batches round-robin from its workers, starting at worker 0 on
every new iterator, so worker w of a rank yields that rank's micro-batches
``w, w + workers, w + 2·workers, ...`` in order: ranks and workers never overlap and nothing
is skipped; every sample comes exactly once per epoch.

Resume. The state is ONE number, the global sample index to continue from (`start_sample`,
or ``load_state_dict({"sample_index": ...})``): the pretrain loop derives it from its step
count (``step · G``), and the next sample is the one that would have come, with any world
size or worker count (it must be a multiple of W·B so every rank starts on a micro-batch).
We chose this over torchdata's ``StatefulDataLoader`` / Lightning's loader-state saving,
which snapshot per-worker iterator states: those are tied to the worker count and world size
of the run that saved them and grow with workers, while a global sample index survives any
change of either and costs nothing to save. `state_dict()` is still provided (a few integers);
it tracks progress only when iterated in-process (num_workers=0); with DataLoader workers the
iteration happens in copies, so use ``step · G`` as said above.

Finite streams. With ``num_samples`` (default for a split read in order, e.g. ``val``: one
epoch) iteration stops before the first micro-batch that would pass it, after truncating to a
multiple of W·B: a tail below ``world_size × micro_batch_size`` samples is not yielded, the
only samples dropped.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from data import DataError
from data.index import SplitIndex
from data.mixing import MixtureIndex
from data.shards import open_tokens, read_document_starts, read_manifest, split_shards, token_dtype

_OPEN_SHARDS = 64  # memmaps kept open per source; a window of shards is read at a time


class _Source:
    """One prepared directory's split: manifest facts, the sample index, lazily opened shards."""

    def __init__(self, directory: Path, split: str, seq_len: int, seed: int, shuffle: bool,
                 window_shards: int):
        self.directory = directory
        manifest = read_manifest(directory)
        self.shards = split_shards(manifest, split, directory)
        self.dtype = token_dtype(manifest["dtype"])
        self.fingerprint = manifest["tokenizer"]["fingerprint"]
        self.vocab_size = manifest["tokenizer"]["vocab_size"]
        self.tokenizer_path = manifest["tokenizer"].get("path")
        self.index = SplitIndex([s["tokens"] for s in self.shards], seq_len, seed, shuffle,
                                window_shards, where=str(directory))
        self._tokens: OrderedDict[int, np.ndarray] = OrderedDict()
        self._starts: OrderedDict[int, np.ndarray] = OrderedDict()

    def __getstate__(self):  # memmaps stay in the process that opened them
        return {**self.__dict__, "_tokens": OrderedDict(), "_starts": OrderedDict()}

    def _cached(self, cache: OrderedDict, shard: int, load):
        if shard in cache:
            cache.move_to_end(shard)
        else:
            cache[shard] = load(self.directory, self.shards[shard])
            if len(cache) > _OPEN_SHARDS:
                cache.popitem(last=False)
        return cache[shard]

    def raise_out_of_vocab(self, shard: int, offset: int, window: np.ndarray) -> None:
        """DataError naming the shard file and the token offset of the first id ≥ vocab."""
        position = int(np.argmax(window >= self.vocab_size))
        token_id, where = int(window[position]), offset + position
        path = self.directory / self.shards[shard]["file"]
        raise DataError(f"corrupt shard: token id {token_id} at token offset {where} is not below the "
                        f"vocabulary size {self.vocab_size}; `slm data inspect --verify` checks every "
                        f"shard's sha256 ({path}, token offset {where})")

    def tokens(self, shard: int) -> np.ndarray:
        return self._cached(self._tokens, shard, lambda d, s: open_tokens(d, s, self.dtype))

    def document_starts(self, shard: int) -> np.ndarray:
        return self._cached(self._starts, shard, read_document_starts)


class StreamingTokenDataset(IterableDataset):
    """Packed samples from one or more prepared directories (see the module docstring).

    Args:
        sources: a prepared directory, or a list of directories or ``(directory, weight)``
            pairs to mix (e.g. ``[("slimpajama", 0.6936), ("starcoder", 0.3064)]``).
        split: ``"train"`` or ``"val"``.
        seq_len: tokens per sample T; each sample reads T + 1 tokens.
        micro_batch_size: samples per DataLoader batch B (use the same as batch_size).
        seed: fixes the order; rank, world_size: this process's place (W ranks).
        start_sample: global sample index to start at (a multiple of W·B).
        document_ids: also yield ``document_ids`` for document-masked attention.
        shuffle: default True for train, False for val.
        num_samples: stop after this many global samples; default None (endless) for a
            shuffled split (train), one epoch (summed over sources) for one read in order (val,
            or any split with ``shuffle=False``).
        window_shards, mix_block_samples: shuffle window and mixing block (data.index/mixing).
        transform: called as ``transform((source, shard, offset), sample)`` on every sample
            (the location is `locate`'s); returns the sample to yield, e.g. with per-token
            teacher targets added (`pretrain.distill.cache_reader`). It travels to DataLoader
            workers by pickling, so it must pickle.

    Attributes for the trainer: `vocab_size` and `tokenizer_path` (from the manifest),
    `samples_per_step` (W·B), `stats()`.

    Yields dicts ``{"input_ids": LongTensor[T], "labels": LongTensor[T]}`` (labels = inputs
    shifted by one), plus ``"document_ids": LongTensor[T]`` (0, 1, ... numbering the documents
    within the sample) when asked. Raises DataError for a bad directory, split or setting, or
    sources prepared with different tokenizers.
    """

    def __init__(self, sources, split: str = "train", *, seq_len: int, micro_batch_size: int = 1,
                 seed: int = 0, rank: int = 0, world_size: int = 1, start_sample: int = 0,
                 document_ids: bool = False, shuffle: bool | None = None,
                 num_samples: int | None = None, window_shards: int = 4,
                 mix_block_samples: int = 1000,
                 transform: Callable[[tuple[int, int, int], dict], dict] | None = None):
        super().__init__()
        pairs = _source_pairs(sources)
        if not 0 <= rank < world_size or micro_batch_size < 1:
            raise DataError(f"need 0 <= rank < world_size and micro_batch_size >= 1, got rank "
                            f"{rank}, world_size {world_size}, micro_batch_size {micro_batch_size}")
        self.split, self.seq_len, self.seed = split, int(seq_len), int(seed)
        self.micro_batch_size, self.rank, self.world_size = micro_batch_size, rank, world_size
        self.with_document_ids = bool(document_ids)
        self.transform = transform
        shuffle = split == "train" if shuffle is None else shuffle
        self.sources = [_Source(Path(d), split, self.seq_len, _source_seed(seed, i), shuffle,
                                window_shards) for i, (d, _) in enumerate(pairs)]
        if len({s.fingerprint for s in self.sources}) > 1:
            raise DataError("the mixed datasets were prepared with different tokenizers "
                            f"({', '.join(str(d) for d, _ in pairs)})")
        self.vocab_size = self.sources[0].vocab_size
        self.tokenizer_path = self.sources[0].tokenizer_path  # where prepare found it, or None
        self.mixture = (MixtureIndex([w for _, w in pairs], seed, mix_block_samples)
                        if len(pairs) > 1 else None)
        if num_samples is None and not shuffle:
            num_samples = sum(s.index.samples_per_epoch for s in self.sources)
        self.num_samples = num_samples
        self.start_sample = self.sample_index = 0
        self.load_state_dict({"sample_index": start_sample})

    @property
    def samples_per_step(self) -> int:
        """Global samples per micro-step across ranks (W·B): the resume granularity."""
        return self.world_size * self.micro_batch_size

    def state_dict(self) -> dict:
        """``{"sample_index": n}``: the global sample index to continue from (module docstring)."""
        return {"sample_index": self.sample_index}

    def load_state_dict(self, state: dict) -> None:
        """Make every later iteration start at ``state["sample_index"]``."""
        sample_index = int(state["sample_index"])
        if sample_index < 0 or sample_index % self.samples_per_step:
            raise DataError(f"start sample {sample_index} is not a multiple of world_size × "
                            f"micro_batch_size = {self.samples_per_step}")
        self.start_sample = self.sample_index = sample_index

    def __len__(self) -> int:
        """Samples this rank yields (finite streams only; an endless one raises TypeError)."""
        if self.num_samples is None:
            raise TypeError("an endless training stream has no length")
        steps = max(self.num_samples // self.samples_per_step
                    - self.start_sample // self.samples_per_step, 0)
        return steps * self.micro_batch_size

    def locate(self, sample_index: int) -> tuple[int, int, int]:
        """Global sample index -> (source number, shard number, first token offset)."""
        source, local = self.mixture.locate(sample_index) if self.mixture else (0, sample_index)
        shard, offset = self.sources[source].index.locate(local)
        return source, shard, offset

    def sample(self, sample_index: int) -> dict[str, torch.Tensor]:
        """The sample at a global index (what iteration yields there)."""
        source_number, shard, offset = self.locate(sample_index)
        source = self.sources[source_number]
        window = source.tokens(shard)[offset:offset + self.seq_len + 1]
        # A flipped byte can make an id the embedding cannot look up (on CUDA: a device-side
        # assert that hides the cause). One max over the window costs ~1 µs per sample.
        if window.max() >= source.vocab_size:
            source.raise_out_of_vocab(shard, offset, window)
        window = window.astype(np.int64)
        sample = {"input_ids": torch.from_numpy(window[:-1]),
                  "labels": torch.from_numpy(window[1:])}
        if self.with_document_ids:
            starts = source.document_starts(shard)
            # Documents starting inside the sample (not at its first token) bump the id.
            low = starts.searchsorted(offset + 1)
            high = starts.searchsorted(offset + self.seq_len)
            boundaries = np.zeros(self.seq_len, dtype=np.int64)
            boundaries[starts[low:high] - offset] = 1
            sample["document_ids"] = torch.from_numpy(boundaries.cumsum())
        if self.transform is not None:
            sample = self.transform((source_number, shard, offset), sample)
        return sample

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        info = get_worker_info()  # read now, not at the first next(): the caller's worker
        if info is None:
            self.sample_index = self.start_sample
            return self._iterate(0, 1, in_process=True)
        return self._iterate(info.id, info.num_workers, in_process=False)

    def _iterate(self, worker: int, workers: int, in_process: bool):
        batch, ranks = self.micro_batch_size, self.world_size
        end = None if self.num_samples is None else (
            self.num_samples // self.samples_per_step * self.samples_per_step)
        rank_batch = self.start_sample // self.samples_per_step + worker
        while True:
            first = (rank_batch * ranks + self.rank) * batch
            if end is not None and first + batch > end:
                return
            for sample_index in range(first, first + batch):
                sample = self.sample(sample_index)
                if in_process and sample_index == first + batch - 1:
                    # Counted before the last yield: the micro-batch is consumed once taken.
                    self.sample_index = (rank_batch + 1) * self.samples_per_step
                yield sample
            rank_batch += workers

    def stats(self) -> dict:
        """Per-source facts at the current position: samples/epoch, dropped tokens, epochs."""
        if self.mixture:
            consumed = self.mixture.samples_per_source(self.sample_index)
        else:
            consumed = np.array([self.sample_index])
        return {"sample_index": self.sample_index, "seq_len": self.seq_len, "sources": [
            {"directory": str(s.directory), "samples_per_epoch": s.index.samples_per_epoch,
             "tokens_per_epoch": s.index.tokens_per_epoch,
             "tokens_dropped_per_epoch": s.index.tokens_dropped_per_epoch,
             "samples_consumed": int(n), "epoch": int(n) // s.index.samples_per_epoch}
            for s, n in zip(self.sources, consumed)]}


def _source_seed(seed: int, source_number: int) -> int:
    # Distinct sources get distinct shuffles even when prepared alike.
    return int(np.random.SeedSequence([seed, source_number]).generate_state(1)[0])


def _source_pairs(sources) -> list[tuple[Path, float]]:
    if isinstance(sources, (str, Path)):
        sources = [sources]
    pairs = []
    for entry in sources:
        if isinstance(entry, (str, Path)):
            pairs.append((Path(entry), 1.0))
        elif isinstance(entry, Sequence) and len(entry) == 2:
            pairs.append((Path(entry[0]), float(entry[1])))
        else:
            raise DataError(f"a data source is a directory or (directory, weight), got {entry!r}")
    if not pairs:
        raise DataError("no data sources given")
    return pairs
