"""The LightningModule: a ``model.Llama``, its loss, the optimizer step and the training metrics.

One ``training_step`` is one optimizer step: the data module hands each rank its whole step
(``[A, B, T]`` micro-batches) and ``pretrain.training.step.training_step`` runs them, clips and
updates. Optimization is manual (``automatic_optimization = False``) so that a non-finite step
is skipped *as a whole* on every rank and FSDP2 reduce-scatters gradients only once per step.
``trainer.global_step`` counts optimizer updates (what ``max_steps``, schedules and checkpoint
names count), and every callback's ``on_train_batch_end`` runs at the end of a step.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import random
import time
from contextlib import nullcontext

import lightning as L
import numpy as np
import torch

from model.kernels.cross_entropy import IMPLEMENTATIONS as CE_IMPLEMENTATIONS
from model.kernels.fused_ops import FUSED_OPS, FusedOps
from pretrain.distill.config import DistillConfig
from pretrain.errors import PretrainError
from pretrain.training.fault.config import FaultConfig
from pretrain.training.fault.spike import LossSpike, SpikeDetector
from pretrain.training.metrics import device_peak_flops, memory_stats_gb, mfu
from pretrain.training.noise_scale import NoiseScale
from pretrain.training.optim import build_adamw
from pretrain.training.schedule import LRSchedule
from pretrain.training.step import (causal_lm_loss, distill_loss, fsdp_gradient_sync, micro_batches,
                                    training_step)

log = logging.getLogger(__name__)


class PretrainModule(L.LightningModule):
    """Pretrain a Llama-style decoder.

    Args:
        preset: model shape, a name in ``model.config.PRESETS`` (e.g. ``tinyllama-1.1b``).
        vocab_size, dim, n_layers, n_heads, n_kv_heads, ffn_dim, max_seq_len, rope_theta,
            tie_embeddings: override that field of the preset (None keeps the preset's value).
        attention_backend: kernel choice passed to the model (``auto`` = fastest available).
        fused_ce: LM head + cross-entropy (training and validation loss): ``chunked`` (never
            materialises the full ``[tokens, vocab]`` logits; CPU and CUDA), ``liger``
            (liger-kernel, CUDA), ``eager`` (full logits, then ``F.cross_entropy``), or ``auto``
            (``liger`` on CUDA when liger-kernel is installed, otherwise ``chunked``). All give
            the same loss up to float rounding.
        fused_ops: fused RMSNorm / rotary / SwiGLU kernels swapped into the model
            (``model.kernels.apply_fused_ops``): ``none`` (the eager math; default), ``liger``
            (liger-kernel, CUDA), ``torch`` (``F.rms_norm``), or ``auto`` (``liger`` on CUDA when
            installed, else ``torch`` on CUDA, else ``none``). Weights and checkpoints are the
            same whatever the choice.
        float8: float8 training of the block linears via torchao (sm89+ GPU: H100, L40, ...;
            ``pretrain.training.float8``); the LM head stays in bf16.
        lr, min_lr: peak and final learning rate. warmup_steps: linear warmup length in steps.
        schedule: ``cosine`` (to ``min_lr`` at ``trainer.max_steps``) or ``wsd``
            (warmup-stable-decay; linear decay over the last ``decay_fraction`` of the steps).
        betas, eps, weight_decay: AdamW (no decay on norms, biases and embeddings).
        grad_clip: max global L2 norm of the gradients (0 = no clipping; the norm is still logged).
        max_nonfinite_steps: abort after this many consecutive steps with a non-finite loss or
            gradient norm (each such step is skipped: no update, counted in ``skipped_steps``).
        mixed_precision: under FSDP2 on GPU, ``bf16`` parameters/activations with fp32 gradient
            reduction and fp32 master weights, or ``fp32``; on CPU always fp32. Outside FSDP2 use
            ``trainer.precision`` (e.g. ``bf16-mixed``) instead.
        activation_checkpointing: ``none``, ``full`` (recompute each block in backward) or
            ``selective`` (keep matmul/attention outputs, recompute the cheap element-wise ops).
        compile: ``torch.compile`` each transformer block.
        noise_scale: estimate the gradient noise scale every step (``pretrain.training.noise_scale``)
            and log it in sequences and tokens; needs ≥ 2 micro-batches per step (the small batch
            is the first micro-batch on all ranks, the big one the whole step).
        distill: knowledge distillation from a teacher (the recipe's top-level ``distill:``
            section, linked here by the CLI; ``pretrain.distill``): the training loss becomes
            ``(1 − α)·CE + α·T²·KL(teacher ‖ student)``; validation stays plain cross-entropy.
        fault: the recipe's ``fault:`` section (linked here by the CLI;
            ``pretrain.training.fault``): with ``spike`` set, a step whose loss spikes above the
            running window raises ``LossSpike`` (``slm pretrain`` rewinds), or, after
            ``max_rewinds`` rewinds, stops the run with a ``PretrainError``.
        document_masking: restrict attention to each packed document; the CLI links it to
            ``data.document_ids`` so the data yields the document ids it needs.
        init_seed: seed of the weight initialisation (linked to ``seed_everything`` by the CLI).
    """

    def __init__(
        self,
        preset: str = "llama-3m",
        vocab_size: int | None = None,
        dim: int | None = None,
        n_layers: int | None = None,
        n_heads: int | None = None,
        n_kv_heads: int | None = None,
        ffn_dim: int | None = None,
        max_seq_len: int | None = None,
        rope_theta: float | None = None,
        tie_embeddings: bool | None = None,
        attention_backend: str = "auto",
        fused_ce: str = "auto",
        fused_ops: str = "none",
        float8: bool = False,
        lr: float = 4e-4,
        min_lr: float = 4e-5,
        warmup_steps: int = 2000,
        schedule: str = "cosine",
        decay_fraction: float = 0.2,
        betas: tuple[float, float] = (0.9, 0.95),
        eps: float = 1e-8,
        weight_decay: float = 0.1,
        grad_clip: float = 1.0,
        max_nonfinite_steps: int = 5,
        mixed_precision: str = "bf16",
        activation_checkpointing: str = "none",
        compile: bool = False,
        noise_scale: bool = False,
        distill: DistillConfig | None = None,
        fault: FaultConfig | None = None,
        document_masking: bool = False,
        init_seed: int = 0,
    ):
        super().__init__()
        from model import LlamaConfig

        self.save_hyperparameters()
        overrides = {k: v for k, v in dict(
            vocab_size=vocab_size, dim=dim, n_layers=n_layers, n_heads=n_heads,
            n_kv_heads=n_kv_heads, ffn_dim=ffn_dim, max_seq_len=max_seq_len, rope_theta=rope_theta,
            tie_embeddings=tie_embeddings).items() if v is not None}
        self.model_config = LlamaConfig.from_name(preset, **overrides, attention_backend=attention_backend)
        if activation_checkpointing not in ("none", "full", "selective"):
            raise PretrainError(f"activation_checkpointing must be none, full or selective, got "
                                f"{activation_checkpointing!r} (model.activation_checkpointing)")
        if mixed_precision not in ("bf16", "fp32"):
            raise PretrainError(f"mixed_precision must be bf16 or fp32, got {mixed_precision!r} (model.mixed_precision)")
        if fused_ce not in CE_IMPLEMENTATIONS:
            raise PretrainError(f"fused_ce must be one of {', '.join(CE_IMPLEMENTATIONS)}, got "
                                f"{fused_ce!r} (model.fused_ce)")
        if fused_ops not in FUSED_OPS:
            raise PretrainError(f"fused_ops must be one of {', '.join(FUSED_OPS)}, got "
                                f"{fused_ops!r} (model.fused_ops)")
        if max_nonfinite_steps < 1:
            raise PretrainError(f"max_nonfinite_steps must be ≥ 1, got {max_nonfinite_steps} (model.max_nonfinite_steps)")
        self.automatic_optimization = False
        self.model = None  # built in configure_model, where the strategy's devices and mesh exist
        # Training state that is checkpointed (on_save_checkpoint) besides model/optimizer/loops;
        # progress itself is the data module's samples_consumed (tokens_seen derives from it).
        self.skipped_steps = 0
        self._consecutive_nonfinite = 0
        self.noise_scale = NoiseScale() if noise_scale else None
        if isinstance(distill, dict):  # as the CLI's link delivers it
            distill = DistillConfig(**distill)
        self.distill = distill.validate() if distill is not None else None
        self._teacher = None  # built in configure_model; never a submodule (not trained, not saved)
        self._distill_parts = []  # (ce, kl) of the current step's micro-batches
        self._last_log = None
        if isinstance(fault, dict):  # as the CLI's link delivers it
            fault = FaultConfig(**fault)
        self.fault = fault.validate() if fault is not None else None
        spike = self.fault.spike if self.fault is not None else None
        self.spike = SpikeDetector(spike.window, spike.zscore) if spike is not None else None

    # ---- model ---------------------------------------------------------------------------
    def configure_model(self) -> None:
        """Build the model once, parallelised by ``pretrain.training.parallelize`` for the strategy in use."""
        if self.model is not None:
            return
        from pretrain.training.parallelize import build_parallel_model, fsdp_mesh

        strategy = self.trainer.strategy
        self.model = build_parallel_model(
            self.model_config, strategy.root_device, fsdp_mesh(strategy),
            init_seed=self.hparams.init_seed, mixed_precision=self.hparams.mixed_precision,
            fused_ops=self.check_kernels(strategy.root_device)[1], float8=self.hparams.float8,
            activation_checkpointing=self.hparams.activation_checkpointing,
            compile=self.hparams.compile)
        if self.distill is not None and self.distill.teacher is not None:
            from pretrain.training.parallelize import build_parallel_teacher

            teacher = build_parallel_teacher(self.distill.teacher, strategy.root_device,
                                             fsdp_mesh(strategy), mixed_precision=self.hparams.mixed_precision)
            object.__setattr__(self, "_teacher", teacher)

    def check_kernels(self, device: torch.device) -> tuple[str, FusedOps]:
        """One-line ``PretrainError`` if a kernel choice cannot run on ``device`` (the CLI calls
        it before any work); returns what ``fused_ce`` and ``fused_ops`` run as there."""
        from pretrain.training.parallelize import KernelChoice, check_kernels

        h = self.hparams
        return check_kernels(KernelChoice(h.attention_backend, h.fused_ce, h.fused_ops, h.float8),
                             self.model_config, device)

    def forward(self, input_ids, document_ids=None):
        return self.model(input_ids, document_ids=document_ids)

    def loss(self, batch) -> torch.Tensor:
        """Mean cross-entropy (nats/token, fp32) of the next-token predictions in a micro-batch."""
        return causal_lm_loss(self.model, batch, self.hparams.fused_ce)

    def training_loss(self, batch) -> torch.Tensor:
        """The loss training minimises: cross-entropy, or the distillation loss (its ``ce`` and
        ``kl`` parts are kept for the step's metrics)."""
        if self.distill is None:
            return self.loss(batch)
        loss, ce, kl = distill_loss(self.model, batch, self.distill, self._teacher)
        self._distill_parts.append(torch.stack([ce, kl]).float())
        return loss

    @property
    def tokens_seen(self) -> int:
        """Tokens of all steps taken so far (global, including skipped steps' batches)."""
        return self.trainer.datamodule.tokens_seen

    # ---- optimizer -----------------------------------------------------------------------
    def lr_schedule(self, max_steps: int | None = None) -> LRSchedule:
        h = self.hparams
        return LRSchedule(lr=h.lr, min_lr=h.min_lr, warmup_steps=h.warmup_steps,
                          max_steps=max_steps or self.trainer.max_steps, kind=h.schedule,
                          decay_fraction=h.decay_fraction)

    def configure_optimizers(self):
        h = self.hparams
        optimizer = build_adamw(self.model, lr=h.lr, betas=h.betas, eps=h.eps, weight_decay=h.weight_decay)
        schedule = self.lr_schedule()
        if self.trainer.is_global_zero:
            log.info(schedule.describe())
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # ---- training ----------------------------------------------------------------------
    def on_fit_start(self) -> None:
        self._flops_per_token = _flops_per_token(self.model_config, self.trainer.datamodule)
        self._peak_flops = device_peak_flops(self.device)
        self._last_log = (time.perf_counter(), self.tokens_seen)
        self._fit_started = time.perf_counter()
        datamodule = self.trainer.datamodule
        if self.noise_scale is not None and datamodule.accumulation() < 2 and self.trainer.is_global_zero:
            log.warning("model.noise_scale: not logged, a step has one micro-batch per rank, so there is "
                        "no second batch size to compare; lower data.micro_batch_size to accumulate ≥ 2")

    def on_train_start(self) -> None:
        datamodule = self.trainer.datamodule
        if getattr(datamodule, "rewound_to", None):  # all state restored: make the rewind durable
            from pretrain.training.fault.spike import commit_rewind

            commit_rewind(self.trainer, self, datamodule.rewound_to)
            datamodule.rewound_to = None

    def training_step(self, batch, batch_idx):
        optimizer, scheduler = self.optimizers(), self.lr_schedulers()
        lr = optimizer.param_groups[0]["lr"]
        result = training_step(
            self.model, optimizer, micro_batches(batch), self.training_loss, grad_clip=self.hparams.grad_clip,
            backward=self.manual_backward,
            gradient_sync=fsdp_gradient_sync(self.model, fallback=self._ddp_gradient_sync),
            reduce_mean=lambda t: self.trainer.strategy.reduce(t, reduce_op="mean"),
            measure_first_micro_batch=self.noise_scale is not None)
        parts = self._distill_step_parts()  # every step, so the list stays one step long
        if not result.updated:
            self._skip_nonfinite_step(result.loss, result.grad_norm)  # no update, no metrics row
            return
        scheduler.step()
        self._consecutive_nonfinite = 0
        if self.spike is not None:
            self._check_spike(result.loss)
        if result.first_micro_grad_sq is not None:
            micro, step = batch["labels"].shape[1], batch["labels"].shape[0] * batch["labels"].shape[1]
            world = self.trainer.world_size
            self.noise_scale.update(result.first_micro_grad_sq.item(), result.grad_norm.item() ** 2,
                                    micro * world, step * world)
        self.log("loss", result.loss, prog_bar=True, logger=False, on_step=True)
        log_every = max(1, self.trainer.log_every_n_steps)
        if self.global_step % log_every == 0 or self.global_step == self.trainer.max_steps:
            self._log_train_metrics(result.loss.item(), lr, result.grad_norm.item(), parts)

    def _check_spike(self, step_loss: torch.Tensor) -> None:
        """Raise ``LossSpike`` (or, past ``max_rewinds``, ``PretrainError``) when this step's loss
        spikes; every rank decides alike (the loss is already the ranks' mean; the flag is reduced too)."""
        stats = self.spike.observe(step_loss.item())
        if not self.trainer.strategy.reduce_boolean_decision(stats.spike, all=False):
            return
        rewinds, limit = len(self.trainer.datamodule.rewinds), self.fault.spike.max_rewinds
        if rewinds >= limit:
            raise PretrainError(
                f"loss spike at step {self.global_step} (loss {stats.loss:.4f}, window mean "
                f"{stats.mean:.4f}, std {stats.std:.4f}) after {rewinds} rewinds, the most allowed; "
                f"inspect the data near sample {self.trainer.datamodule.samples_consumed} or lower "
                f"the learning rate (fault.spike.max_rewinds)")
        raise LossSpike(self.global_step, stats, self.spike.window)

    def _distill_step_parts(self) -> dict[str, torch.Tensor]:
        """Mean ``ce`` and ``kl`` of the step's micro-batches over all ranks ({} without distillation)."""
        if not self._distill_parts:
            return {}
        ce, kl = self.trainer.strategy.reduce(torch.stack(self._distill_parts).mean(0), reduce_op="mean")
        self._distill_parts = []
        return {"ce": ce, "kl": kl}

    def _ddp_gradient_sync(self, last: bool):
        """Under DDP (Lightning wraps this module), skip the all-reduce but on the last micro-batch."""
        strategy = self.trainer.strategy
        if not last and hasattr(strategy, "block_backward_sync"):
            return strategy.block_backward_sync()
        return nullcontext()

    def _skip_nonfinite_step(self, step_loss, grad_norm) -> None:
        self.skipped_steps += 1
        self._consecutive_nonfinite += 1
        log.warning("non-finite loss %s / grad norm %s after step %d: skipped the update "
                    "(%d in a row, %d in total)", step_loss.item(), grad_norm.item(), self.global_step,
                    self._consecutive_nonfinite, self.skipped_steps)
        if self._consecutive_nonfinite >= self.hparams.max_nonfinite_steps:
            raise PretrainError(
                f"loss or gradient norm was non-finite for {self._consecutive_nonfinite} consecutive "
                f"steps after step {self.global_step}; lower the learning rate or resume from an "
                f"earlier checkpoint (model.max_nonfinite_steps)")

    def _log_train_metrics(self, loss: float, lr: float, grad_norm: float, extra: dict) -> None:
        now = time.perf_counter()
        then, tokens_then = self._last_log
        tokens_per_s = (self.tokens_seen - tokens_then) / max(now - then, 1e-9)
        self._last_log = (now, self.tokens_seen)
        metrics = {"loss": loss, "lr": lr, "grad_norm": grad_norm, "tokens_seen": self.tokens_seen,
                   "tokens_per_s": tokens_per_s, "skipped_steps": self.skipped_steps,
                   "elapsed_s": now - self._fit_started, **memory_stats_gb(self.device),
                   **({"rewinds": len(self.trainer.datamodule.rewinds)} if self.spike is not None else {}),
                   **{key: value.item() for key, value in extra.items()}}
        if self.noise_scale is not None:
            metrics.update(self.noise_scale.metrics(self.trainer.datamodule.seq_len))
        utilisation = mfu(tokens_per_s / self.trainer.world_size, self._flops_per_token, self._peak_flops)
        if utilisation is not None:
            metrics["mfu"] = utilisation
        self._log_to_loggers(metrics)

    def _log_to_loggers(self, metrics: dict) -> None:
        for logger in self.loggers:
            logger.log_metrics(metrics, step=self.global_step)

    # ---- validation ----------------------------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        self._val_nats = torch.zeros((), device=self.device, dtype=torch.float64)
        self._val_tokens = torch.zeros((), device=self.device, dtype=torch.float64)
        self._val_bytes = torch.zeros((), device=self.device, dtype=torch.float64)
        token_bytes = self.trainer.datamodule.token_bytes
        self._token_bytes = None if token_bytes is None else token_bytes.to(self.device)

    def validation_step(self, batch, batch_idx):
        labels = batch["labels"]
        self._val_nats += self.loss(batch).detach().double() * labels.numel()
        self._val_tokens += labels.numel()
        if self._token_bytes is not None:
            self._val_bytes += self._token_bytes[labels].sum()

    def on_validation_epoch_end(self) -> None:
        nats, tokens, bytes_ = (self.trainer.strategy.reduce(t, reduce_op="sum")
                                for t in (self._val_nats, self._val_tokens, self._val_bytes))
        # Lightning's sanity check (trainer.num_sanity_val_steps, -1 = the whole validation set)
        # before a fresh run's first step is logged as step 0: the untrained baseline (≈ ln V).
        if tokens.item() == 0 or (self.trainer.sanity_checking and self.global_step > 0):
            return
        val_loss = (nats / tokens).item()
        self.log("val_loss", val_loss, prog_bar=True, logger=False, sync_dist=True)  # equal on all ranks already
        metrics = {"val_loss": val_loss, "val_ppl": math.exp(min(val_loss, 50.0)),
                   "tokens_seen": self.tokens_seen}
        if bytes_.item() > 0:  # bits per byte: comparable across tokenizers
            metrics["val_bpb"] = (nats / (math.log(2) * bytes_)).item()
        self._log_to_loggers(metrics)

    # ---- checkpoint state ----------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["pretrain"] = {
            "skipped_steps": self.skipped_steps,
            "consecutive_nonfinite": self._consecutive_nonfinite,
            "noise_scale": None if self.noise_scale is None else self.noise_scale.state_dict(),
            "spike": None if self.spike is None else self.spike.state_dict(),
            "model_config": dataclasses.asdict(self.model_config),
            # Plain tensors/tuples only, so the checkpoint loads with torch.load(weights_only=True).
            "rng": {"torch": torch.get_rng_state(), "numpy": _numpy_rng_state(),
                    "python": random.getstate(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None},
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint["pretrain"]
        self.skipped_steps = state["skipped_steps"]
        self._consecutive_nonfinite = state["consecutive_nonfinite"]
        if self.noise_scale is not None and state.get("noise_scale"):
            self.noise_scale.load_state_dict(state["noise_scale"])
        if self.spike is not None and state.get("spike"):
            self.spike.load_state_dict(state["spike"])
        rng = state["rng"]
        torch.set_rng_state(rng["torch"])
        name, keys, position, has_gauss, cached_gaussian = rng["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), position, has_gauss, cached_gaussian))
        random.setstate(rng["python"])
        if rng["cuda"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])


def _numpy_rng_state() -> tuple:
    name, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    return name, torch.from_numpy(keys.astype(np.int64)), int(position), int(has_gauss), float(cached_gaussian)


def _flops_per_token(config, datamodule) -> float:
    from model.flops import flops_per_token

    seq_len = getattr(datamodule, "seq_len", None) or config.max_seq_len
    return flops_per_token(config, seq_len)
