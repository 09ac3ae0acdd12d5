"""The LightningDataModule: prepared token shards → one batch per optimizer step.

A training batch is a rank's whole step: ``{"input_ids": [A, B, T], "labels": [A, B, T]}``
(plus ``"document_ids"`` when ``model.document_masking`` is on), A = accumulation micro-batches
of B = ``micro_batch_size`` sequences of T = ``seq_len`` tokens, A from the run plan
(``pretrain.training.plan``). Step s consumes global samples ``[s·G, (s+1)·G)`` (G sequences
per step); rank r takes the r-th of its W equal parts, so the samples of a step do not depend on
the world size.

Resume is exact and independent of world size and worker count: the data position is one
number, ``samples_consumed`` (global samples taken by training steps so far, saved in every
checkpoint; tokens seen = samples_consumed × seq_len), and the training stream restarts at that
global sample index (``data.StreamingTokenDataset(start_sample=...)``), whose order depends only
on the seed. A loss-spike rewind (``pretrain.training.fault.spike``) moves the position on
by the batches it skips and records itself in ``rewinds``; both are checkpointed, so the order
stays a pure function of (seed, rewinds, step).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, default_collate

from pretrain.errors import PretrainError

log = logging.getLogger(__name__)


@dataclass
class DataSource:
    """A prepared data directory (``slm data prepare`` output) and its mixing weight."""

    path: str
    weight: float = 1.0


class PretrainDataModule(L.LightningDataModule):
    """Training and validation streams over one or more prepared directories.

    Args:
        path: one prepared directory (shorthand for ``sources: [{path: ..., weight: 1}]``).
        sources: prepared directories mixed by weight (e.g. SlimPajama 0.6936, StarCoder 0.3064).
        seq_len: tokens per training sequence (at most the model's ``max_seq_len``).
        global_batch_tokens: tokens per optimizer step over all ranks; must be a multiple of
            ``seq_len × micro_batch_size × world_size`` (the quotient is the accumulation).
        micro_batch_size: sequences per forward/backward on one device.
        num_workers: DataLoader worker processes per rank (the order does not depend on it).
        seed: data order seed (linked to ``seed_everything`` by the CLI).
        val_every_n_steps: validate every this many optimizer steps.
        val_sequences: sequences per validation over all ranks (None = the whole validation
            split); the same sequences whatever the world size.
        val_path: validate on this prepared directory instead of the training data's ``val``
            split, e.g. a clean held-out corpus: its ``val`` split if that holds tokens, else
            its ``train`` split, read in order (never shuffled). It must be prepared with the
            training data's tokenizer (same fingerprint); None = the training data's ``val``.
        document_ids: also load document ids; linked to ``model.document_masking`` by the CLI,
            the one switch for document-masked attention.
        demo_corpus: ``stdlib`` builds ``path`` on first use from the running Python's standard
            library sources (tokenizer + shards; no download) — the README demo;
            ``site-packages`` from the installed packages' ``.py`` files (266 MB kept, 151M
            tokens at vocab 512: the scaling demo's single-epoch corpus); None = off.
        demo_vocab_size: vocabulary of the demo tokenizer.
        demo_max_bytes: read at most this many bytes of ``site-packages`` sources (None: all).
        single_epoch: refuse a run that would see any training token twice (the plan compares
            the tokens it needs with one epoch of each source); None = on for the
            ``site-packages`` demo corpus, off otherwise.
        distill_cache: ``{"path": DIR, "top_k": k}`` of a teacher cache (``slm distill cache``),
            linked from the recipe's ``distill:`` section: every training sample then carries
            the teacher's top-k ``teacher_logprobs`` and ``teacher_ids``.
    """

    def __init__(self, path: str | None = None, sources: list[DataSource] | None = None,
                 seq_len: int = 2048, global_batch_tokens: int = 2048 * 1024,
                 micro_batch_size: int = 8, num_workers: int = 2, seed: int = 0,
                 val_every_n_steps: int = 1000, val_sequences: int | None = 512,
                 val_path: str | None = None, document_ids: bool = False,
                 demo_corpus: str | None = None, demo_vocab_size: int = 4096,
                 demo_max_bytes: int | None = None,
                 single_epoch: bool | None = None, distill_cache: dict | None = None):
        super().__init__()
        if (path is None) == (not sources):
            raise PretrainError("give exactly one of data.path or data.sources (data)")
        self.sources = [DataSource(path)] if path is not None else [
            s if isinstance(s, DataSource) else DataSource(**s) for s in sources]
        if demo_corpus not in (None, "stdlib", "site-packages"):
            raise PretrainError(f"unknown demo corpus {demo_corpus!r}; choose stdlib or site-packages "
                                f"(data.demo_corpus)")
        if demo_max_bytes is not None and (demo_corpus != "site-packages" or demo_max_bytes < 1):
            raise PretrainError("data.demo_max_bytes caps the site-packages demo corpus: a positive "
                                "number with data.demo_corpus: site-packages (data.demo_max_bytes)")
        if demo_corpus and len(self.sources) != 1:
            raise PretrainError("data.demo_corpus builds a single data.path, not data.sources (data.demo_corpus)")
        self.seq_len, self.global_batch_tokens = seq_len, global_batch_tokens
        self.micro_batch_size, self.num_workers, self.seed = micro_batch_size, num_workers, seed
        self.val_every_n_steps, self.val_sequences = val_every_n_steps, val_sequences
        self.val_path = val_path
        self.val_split = "val"  # of val_path: prepare_and_inspect sets it
        self.document_ids, self.demo_corpus, self.demo_vocab_size = document_ids, demo_corpus, demo_vocab_size
        self.demo_max_bytes = demo_max_bytes
        self.single_epoch = demo_corpus == "site-packages" if single_epoch is None else single_epoch
        self.distill_cache = distill_cache
        self.samples_consumed = 0  # global training samples of the steps taken: THE progress counter
        self.rewinds: list[dict] = []  # loss-spike rewinds so far, each with the samples it skipped
        self.pending_rewind: dict | None = None  # set by `slm pretrain` to rewind on the next load
        self.rewound_to: str | None = None  # the checkpoint a rewind has just loaded (then saved again)
        self.vocab_size: int | None = None
        self.tokenizer_dir: str | None = None
        self.token_bytes: torch.Tensor | None = None  # UTF-8 bytes per token id, for val_bpb

    @property
    def tokens_seen(self) -> int:
        return self.samples_consumed * self.seq_len

    # ---- called by the CLI before training, on every rank --------------------------------
    def prepare_and_inspect(self) -> None:
        """Build the demo data if asked, then read the manifests: vocab size and tokenizer."""
        if self.demo_corpus:
            from pretrain.training.demo_data import ensure_demo_data

            ensure_demo_data(Path(self.sources[0].path), self.demo_corpus,
                             vocab_size=self.demo_vocab_size, max_bytes=self.demo_max_bytes)
        from data.shards import read_manifest

        manifests = [read_manifest(Path(s.path)) for s in self.sources]
        self.train_shard_tokens = [[int(shard["tokens"]) for shard in m["splits"]["train"]["shards"]]
                                   for m in manifests]
        self.vocab_size = max(m["tokenizer"]["vocab_size"] for m in manifests)
        if self.val_path is not None:
            self.val_split = self._check_val_path(manifests[0])
        self.tokenizer_dir = manifests[0]["tokenizer"].get("path")
        if self.tokenizer_dir and Path(self.tokenizer_dir).exists():
            import tokenizer

            self.token_bytes = torch.tensor(tokenizer.load(self.tokenizer_dir).token_bytes())
        else:
            log.info("val_bpb is not logged: the data's tokenizer (%s) is not here to count the "
                     "bytes of its tokens", self.tokenizer_dir)

    def _check_val_path(self, train_manifest: dict) -> str:
        """``val_path``'s split to validate on; PretrainError if it is not prepared data, holds
        no tokens or was tokenised with another tokenizer than the training data's."""
        from data import DataError
        from data.shards import read_manifest

        try:
            manifest = read_manifest(Path(self.val_path))
        except DataError as e:
            raise PretrainError(f"{e} (data.val_path)") from None
        want, got = train_manifest["tokenizer"], manifest["tokenizer"]
        if got["fingerprint"] != want["fingerprint"]:
            raise PretrainError(
                f"{self.val_path} was prepared with another tokenizer (fingerprint "
                f"{got['fingerprint'][:12]}..., vocab {got['vocab_size']}) than the training data "
                f"{self.sources[0].path} ({want['fingerprint'][:12]}..., vocab {want['vocab_size']}); "
                f"prepare it with the same --tokenizer (data.val_path)")
        splits = manifest["splits"]
        split = next((s for s in ("val", "train") if splits.get(s, {}).get("tokens")), None)
        if split is None:
            raise PretrainError(f"{self.val_path} holds no tokens (data.val_path)")
        log.info("validating on %s: its %s split, %s tokens", self.val_path, split,
                 f"{splits[split]['tokens']:,}")
        return split

    def verify_shards(self) -> None:
        """Re-hash every shard and index file of every source and of ``val_path`` against its
        manifest (what `slm data inspect --verify` does); DataError naming the first file that
        differs."""
        import time

        from data.shards import check_checksums, read_manifest

        started, size = time.perf_counter(), 0
        for directory in [Path(s.path) for s in self.sources] + (
                [Path(self.val_path)] if self.val_path is not None else []):
            manifest = read_manifest(directory)
            check_checksums(directory, manifest)
            size += sum((directory / shard[name]).stat().st_size for entry in manifest["splits"].values()
                        for shard in entry.get("shards", []) for name in ("file", "index_file"))
        seconds = time.perf_counter() - started
        log.info("verified the sha256 of every shard: %.1f MB in %.1f s (%.0f MB/s)", size / 1e6,
                 seconds, size / 1e6 / max(seconds, 1e-9))

    def epoch_samples(self) -> list[tuple[str, float, int]]:
        """(path, share of the training samples, training samples in one epoch) per source;
        a sample is ``seq_len + 1`` tokens that never cross a shard end (``data.index``)."""
        total_weight = sum(s.weight for s in self.sources)
        return [(str(s.path), s.weight / total_weight,
                 sum(max((t - 1) // self.seq_len, 0) for t in tokens))
                for s, tokens in zip(self.sources, self.train_shard_tokens)]

    def check_vocab(self, model_vocab_size: int) -> None:
        """The model must embed every token id of the data, padded by at most a multiple of 128."""
        data_vocab = self.vocab_size
        padded = -(-data_vocab // 128) * 128
        if not data_vocab <= model_vocab_size <= padded:
            raise PretrainError(
                f"model vocab_size {model_vocab_size} does not fit the data's tokenizer "
                f"(vocab {data_vocab}, {self.sources[0].path}); set model.vocab_size to "
                f"{data_vocab} (or up to {padded} for padding) (model.vocab_size)")

    # ---- Lightning hooks -----------------------------------------------------------------
    def accumulation(self) -> int:
        """Micro-batches per rank and step for this trainer's world size (the run plan's rule)."""
        from pretrain.training.plan import accumulation_for

        return accumulation_for(self.global_batch_tokens, self.seq_len, self.micro_batch_size,
                                self.trainer.world_size)

    def teacher_targets(self, student_vocab_size: int | None = None):
        """The cached teacher's per-sample targets (a dataset transform), checked against the
        shards, or None without a cache; ``PretrainError`` on a mismatch."""
        if self.distill_cache is None:
            return None
        from pretrain.distill.cache_reader import open_teacher_targets

        return open_teacher_targets(self.distill_cache["path"], [s.path for s in self.sources],
                                    seq_len=self.seq_len, document_masking=self.document_ids,
                                    top_k=self.distill_cache.get("top_k"),
                                    student_vocab_size=student_vocab_size)

    def _dataset(self, split: str, samples_per_rank: int, start_sample: int = 0,
                 num_samples: int | None = None, transform=None):
        from data import StreamingTokenDataset

        sources = [(s.path, s.weight) for s in self.sources]
        shuffle = None  # the split's own rule: train shuffled, val in order
        if split == "val" and self.val_path is not None:
            sources, split, shuffle = [(self.val_path, 1.0)], self.val_split, False  # one pass
        return StreamingTokenDataset(
            sources, split, seq_len=self.seq_len, shuffle=shuffle,
            micro_batch_size=samples_per_rank, seed=self.seed, rank=self.trainer.global_rank,
            world_size=self.trainer.world_size, start_sample=start_sample,
            document_ids=self.document_ids, num_samples=num_samples, transform=transform)

    def train_dataloader(self) -> DataLoader:
        if self.samples_consumed:
            log.info("resuming the training stream at global sample %d", self.samples_consumed)
        accumulation = self.accumulation()
        # The dataset's unit is one rank's whole step (A·B samples); the loader collates it and
        # cuts it into A micro-batches, so one loader batch is one optimizer step.
        dataset = self._dataset("train", accumulation * self.micro_batch_size, self.samples_consumed,
                                transform=self.teacher_targets())
        return DataLoader(dataset, batch_size=accumulation * self.micro_batch_size,
                          num_workers=self.num_workers, pin_memory=torch.cuda.is_available(),
                          collate_fn=partial(collate_step, accumulation=accumulation),
                          persistent_workers=False)

    def val_dataloader(self) -> DataLoader:
        # Validation runs in the training process between steps: no worker start-up per round.
        # The first val_sequences of the (unshuffled) split, divided among the ranks; the split
        # is data.val_path's when that is set.
        dataset = self._dataset("val", self.micro_batch_size)
        if self.val_sequences is not None:
            dataset = self._dataset("val", self.micro_batch_size,
                                    num_samples=min(self.val_sequences, dataset.num_samples))
        return DataLoader(dataset, batch_size=self.micro_batch_size, num_workers=0,
                          pin_memory=torch.cuda.is_available())

    def on_before_batch_transfer(self, batch, dataloader_idx: int):
        if self.trainer.training:
            self.samples_consumed += batch["labels"][:, :, 0].numel() * self.trainer.world_size
        return batch

    @property
    def samples_per_step(self) -> int:
        """Global samples one optimizer step consumes (G)."""
        return self.global_batch_tokens // self.seq_len

    def state_dict(self) -> dict:
        return {"samples_consumed": self.samples_consumed, "rewinds": [dict(r) for r in self.rewinds]}

    def load_state_dict(self, state_dict: dict) -> None:
        self.samples_consumed = int(state_dict["samples_consumed"])
        self.rewinds = [dict(r) for r in state_dict.get("rewinds", [])]
        if self.pending_rewind is not None:
            self._skip(self.pending_rewind)
            self.pending_rewind = None

    def _skip(self, rewind: dict) -> None:
        """Apply a rewind to the state just loaded: skip its ``skip_batches`` steps of data."""
        skipped = rewind["skip_batches"] * self.samples_per_step
        self.rewinds.append({**rewind, "from_sample": self.samples_consumed, "skipped_samples": skipped})
        self.samples_consumed += skipped
        self.rewound_to = rewind["checkpoint"]


def collate_step(samples: list[dict], accumulation: int) -> dict:
    """A rank's A·B samples of one step → tensors shaped ``[A, B, ...]`` (micro-batch first)."""
    batch = default_collate(samples)
    return {key: value.view(accumulation, -1, *value.shape[1:]) for key, value in batch.items()}
