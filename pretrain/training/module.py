"""The LightningModule: a ``model.Llama``, its loss, the optimizer step and the training metrics.

Optimization is manual (``automatic_optimization = False``): one ``training_step`` is one
micro-batch, and every ``accumulation`` micro-batches this module clips, checks for non-finite
values and steps. Doing it by hand (rather than ``Trainer(accumulate_grad_batches=...)``) is what
lets a non-finite step be skipped *as a whole* on every rank, lets FSDP2 skip the gradient
reduce-scatter on all but the last micro-batch, and keeps ``trainer.global_step`` equal to the
number of optimizer updates (what ``max_steps``, schedules and checkpoint names count).

Loss: token-mean cross-entropy per micro-batch, divided by ``accumulation``, with gradients
averaged over data-parallel ranks. It is computed from the final hidden states and the LM head
weight by ``model.kernels.cross_entropy.linear_cross_entropy`` (``fused_ce``), which by default
never materialises the ``[tokens, vocab]`` logits (the largest activation of a small model).
Every micro-batch has the same number of tokens (packed fixed-length sequences, no padding), so
this mean of means is exactly the token mean over the global batch: accumulation over k
micro-batches equals one k-times larger batch.
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
from model.kernels.cross_entropy import linear_cross_entropy, resolve_implementation
from model.kernels.fused_ops import FUSED_OPS, FusedOps, resolve_fused_ops
from model.kernels.optional import import_optional
from pretrain.errors import PretrainError
from pretrain.training.metrics import device_peak_flops, memory_stats_gb, mfu
from pretrain.training.optim import build_adamw
from pretrain.training.schedule import LRSchedule

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
        document_masking: restrict attention to each packed document (needs ``document_ids``
            from the data).
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
        self.accumulation = 1  # micro-batches per optimizer step; set by the CLI from the data config
        self.log_every_n_steps = 50  # set from trainer.log_every_n_steps in on_fit_start
        # Training state that is checkpointed (on_save_checkpoint) besides model/optimizer/loops.
        self.tokens_seen = 0
        self.skipped_steps = 0
        self._consecutive_nonfinite = 0
        self._micro_in_step = 0  # micro-batches of the current step so far (0 at every checkpoint)
        self._step_loss_sum = None
        self._val_sum = self._val_count = None
        self._last_log = None

    # ---- model ---------------------------------------------------------------------------
    def configure_model(self) -> None:
        """Build the model once, parallelised by ``pretrain.training.parallelize`` for the strategy in use."""
        if self.model is not None:
            return
        from pretrain.training.parallelize import build_parallel_model

        self.model = build_parallel_model(
            self.model_config, self.trainer.strategy, init_seed=self.hparams.init_seed,
            mixed_precision=self.hparams.mixed_precision,
            fused_ops=self.check_kernels(self.trainer.strategy.root_device),
            float8=self.hparams.float8,
            activation_checkpointing=self.hparams.activation_checkpointing,
            compile=self.hparams.compile)

    def check_kernels(self, device: torch.device) -> FusedOps:
        """One-line ``PretrainError`` if ``fused_ce``, ``fused_ops`` or ``float8`` cannot run on
        ``device`` (``liger`` off CUDA, float8 below sm89, a package not installed); the CLI calls
        it before any work. Returns the fused ops ``fused_ops`` means there."""
        if self.hparams.float8:
            from pretrain.training.float8 import check_float8_device

            check_float8_device(device, "model.float8")
        try:
            if resolve_implementation(self.hparams.fused_ce, device) == "liger":
                import_optional("liger_kernel.transformers", "fused cross-entropy 'liger'")
        except ValueError as e:
            raise PretrainError(f"{e} (model.fused_ce)") from e
        try:
            return resolve_fused_ops(self.hparams.fused_ops, device)
        except ValueError as e:
            raise PretrainError(f"{e} (model.fused_ops)") from e

    def forward(self, input_ids, document_ids=None):
        return self.model(input_ids, document_ids=document_ids)

    def loss(self, batch) -> torch.Tensor:
        """Mean cross-entropy (nats/token, fp32) of the next-token predictions in ``batch``."""
        document_ids = batch.get("document_ids") if self.hparams.document_masking else None
        # ``forward_hidden`` is registered as an FSDP2 forward method (pretrain.training.parallelize), so
        # under FSDP2 it all-gathers like ``forward``; the root group (embeddings, final norm,
        # head) is not resharded after forward, so ``output.weight`` is the unsharded parameter
        # here and its gradient flows back to it like through ``model.output``.
        hidden = self.model.forward_hidden(batch["input_ids"], document_ids=document_ids)
        return linear_cross_entropy(hidden, self.model.output.weight, batch["labels"],
                                    implementation=self.hparams.fused_ce)

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

    # ---- training ------------------------------------------------------------------------
    def on_train_start(self) -> None:
        # Lightning counts micro-batches (validation is scheduled on that count); a checkpoint
        # written at another world size, hence another accumulation, counted in other units.
        # Re-express the restored count in this run's micro-batches: consumed samples / (B·W).
        datamodule = self.trainer.datamodule
        micro_batches = datamodule.samples_consumed // (datamodule.micro_batch_size * self.trainer.world_size)
        progress = self.trainer.fit_loop.epoch_loop.batch_progress
        for counter in (progress.total, progress.current):
            counter.ready = counter.started = counter.processed = counter.completed = micro_batches

    def on_fit_start(self) -> None:
        self.log_every_n_steps = max(1, self.trainer.log_every_n_steps)
        self._flops_per_token = _flops_per_token(self.model_config, self.trainer.datamodule)
        self._peak_flops = device_peak_flops(self.device)
        self._last_log = (time.perf_counter(), self.tokens_seen)
        self._fit_started = time.perf_counter()

    def training_step(self, batch, batch_idx):
        self._micro_in_step += 1
        last_micro = self._micro_in_step == self.accumulation
        with self._gradient_sync(last_micro):
            loss = self.loss(batch)
            self.manual_backward(loss / self.accumulation)
        self.tokens_seen += batch["labels"].numel() * self.trainer.world_size
        detached = loss.detach().float()
        self._step_loss_sum = detached if self._step_loss_sum is None else self._step_loss_sum + detached
        if last_micro:
            self._micro_in_step = 0
            self._optimizer_step()

    def _gradient_sync(self, enabled: bool):
        """Reduce gradients across ranks only on the last micro-batch of a step (FSDP2, DDP)."""
        if hasattr(self.model, "set_requires_gradient_sync"):  # an FSDP2-sharded root module
            self.model.set_requires_gradient_sync(enabled)
            return nullcontext()
        if not enabled and hasattr(self.trainer.strategy, "block_backward_sync"):
            return self.trainer.strategy.block_backward_sync()
        return nullcontext()

    def _optimizer_step(self) -> None:
        from pretrain.training.parallelize import clip_grad_norm

        optimizer, scheduler = self.optimizers(), self.lr_schedulers()
        lr = optimizer.param_groups[0]["lr"]
        step_loss = self.trainer.strategy.reduce(self._step_loss_sum / self.accumulation, reduce_op="mean")
        self._step_loss_sum = None
        grad_norm = clip_grad_norm(self.model, self.hparams.grad_clip or math.inf)
        if not (torch.isfinite(step_loss) and torch.isfinite(grad_norm)):
            optimizer.zero_grad(set_to_none=True)
            self._skip_nonfinite_step(step_loss, grad_norm)  # no update, no metrics row
            return
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        self._consecutive_nonfinite = 0
        self.log("loss", step_loss, prog_bar=True, logger=False, on_step=True)
        if self.global_step % self.log_every_n_steps == 0 or self.global_step == self.trainer.max_steps:
            self._log_train_metrics(step_loss.item(), lr, grad_norm.item())

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

    def _log_train_metrics(self, loss: float, lr: float, grad_norm: float) -> None:
        now = time.perf_counter()
        then, tokens_then = self._last_log
        tokens_per_s = (self.tokens_seen - tokens_then) / max(now - then, 1e-9)
        self._last_log = (now, self.tokens_seen)
        metrics = {"loss": loss, "lr": lr, "grad_norm": grad_norm, "tokens_seen": self.tokens_seen,
                   "tokens_per_s": tokens_per_s, "skipped_steps": self.skipped_steps,
                   "elapsed_s": now - self._fit_started,
                   **memory_stats_gb(self.device)}
        utilisation = mfu(tokens_per_s / self.trainer.world_size, self._flops_per_token, self._peak_flops)
        if utilisation is not None:
            metrics["mfu"] = utilisation
        self._log_to_loggers(metrics)

    def _log_to_loggers(self, metrics: dict) -> None:
        for logger in self.loggers:
            logger.log_metrics(metrics, step=self.global_step)

    # ---- validation ----------------------------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        self._val_sum = torch.zeros((), device=self.device)
        self._val_count = torch.zeros((), device=self.device)

    def validation_step(self, batch, batch_idx):
        self._val_sum += self.loss(batch).detach().float()
        self._val_count += 1

    def on_validation_epoch_end(self) -> None:
        total = self.trainer.strategy.reduce(self._val_sum, reduce_op="sum")
        count = self.trainer.strategy.reduce(self._val_count, reduce_op="sum")
        # Lightning's sanity check (trainer.num_sanity_val_steps, -1 = the whole validation set)
        # before a fresh run's first step is logged as step 0: the untrained baseline (≈ ln V).
        if count.item() == 0 or (self.trainer.sanity_checking and self.global_step > 0):
            return
        val_loss = (total / count).item()
        self.log("val_loss", val_loss, prog_bar=True, logger=False, sync_dist=True)  # equal on all ranks already
        self._log_to_loggers({"val_loss": val_loss, "val_ppl": math.exp(min(val_loss, 50.0)),
                              "tokens_seen": self.tokens_seen})

    # ---- checkpoint state ----------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["pretrain"] = {
            "tokens_seen": self.tokens_seen,
            "skipped_steps": self.skipped_steps,
            "consecutive_nonfinite": self._consecutive_nonfinite,
            "model_config": dataclasses.asdict(self.model_config),
            # Plain tensors/tuples only, so the checkpoint loads with torch.load(weights_only=True).
            "rng": {"torch": torch.get_rng_state(), "numpy": _numpy_rng_state(),
                    "python": random.getstate(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None},
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint["pretrain"]
        self.tokens_seen = state["tokens_seen"]
        self.skipped_steps = state["skipped_steps"]
        self._consecutive_nonfinite = state["consecutive_nonfinite"]
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
