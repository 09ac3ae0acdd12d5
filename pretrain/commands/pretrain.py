"""`slm pretrain --config FILE.yaml [--section.key value ...] [--ckpt_path last]`: LightningCLI fit.

The command line is parsed by LightningCLI (jsonargparse): ``model:`` → ``PretrainModule``,
``data:`` → ``PretrainDataModule``, ``trainer:`` → ``lightning.Trainer``, ``checkpoint:`` →
``PeriodicCheckpoint``; ``seed_everything`` seeds weights and data order; ``max_tokens`` may
give the run length instead of ``trainer.max_steps``. Before any training work it resolves the
run plan (``pretrain.training.plan``: batch arithmetic, sequence length, masking, length) and
checks the data's vocabulary, the kernels and the checkpoint to resume from (intact, same model
shape); then it saves ``RUN_DIR/config.yaml`` and ``RUN_DIR/plan.json`` and fits.

``--ckpt_path last`` resumes from the newest intact checkpoint of the run directory (a damaged
newer one is skipped with a log line) and starts fresh when there is none yet, so the same
command both starts and continues a run (what SLURM requeueing relies on).

``fault:`` (``pretrain.training.fault``): on a loss spike the fit ends with ``LossSpike`` on
every rank and is started again, with fresh objects, from the rewind checkpoint, skipping data
(``fault.spike``); ``fault.step_timeout_s`` adds the hung-step watchdog and sets the collective
timeout.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import logging
import os
from pathlib import Path

from pretrain.errors import PretrainError
from pretrain.training.checkpoint.layout import CONFIG_NAME, STATE_NAME, resolve_ckpt_path
from pretrain.training.fault.spike import LossSpike
from pretrain.training.plan import check_single_epoch, resolve_plan, save_plan
from tokenizer.atomic import write_atomic

log = logging.getLogger(__name__)

# Fields that decide the shapes of the weights: a checkpoint must agree on all of them.
SHAPE_FIELDS = ("vocab_size", "dim", "n_layers", "n_heads", "n_kv_heads", "ffn_dim", "tie_embeddings")


def run(argv: list[str]) -> int:
    _quiet_lightning()
    rewind = None
    while True:
        spike = _fit(argv, rewind)
        if spike is None:
            return 0
        rewind = spike
        # The spiking fit's trainer, model and optimizer are unreachable now: free them (and
        # their GPU memory) before the next fit builds its own.
        gc.collect()
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _fit(argv: list[str], rewind: dict | None) -> dict | None:
    """One ``trainer.fit``; with ``rewind``, from its checkpoint with its skip applied. Returns the
    rewind to do next after a loss spike (same on every rank), else None."""
    cli = _parse(argv)
    trainer, module, datamodule = cli.trainer, cli.model, cli.datamodule
    run_dir = Path(trainer.default_root_dir)
    datamodule.prepare_and_inspect()
    if rewind is None and cli.config.get("verify_data"):  # once per run, not per rewind
        datamodule.verify_shards()
    plan = resolve_plan(
        seq_len=datamodule.seq_len, max_seq_len=module.model_config.max_seq_len,
        micro_batch_size=datamodule.micro_batch_size, world_size=trainer.num_devices * trainer.num_nodes,
        global_batch_tokens=datamodule.global_batch_tokens,
        document_masking=module.hparams.document_masking, data_has_document_ids=datamodule.document_ids,
        max_steps=trainer.max_steps, max_tokens=cli.config.get("max_tokens"),
        val_every_n_steps=datamodule.val_every_n_steps)
    if datamodule.single_epoch:
        check_single_epoch(plan, datamodule.epoch_samples())
    datamodule.check_vocab(module.model_config.vocab_size)
    if module.distill is not None:
        _check_distillation(module, datamodule)
    module.lr_schedule(max_steps=plan.max_steps)  # a bad schedule fails now, not after setup
    module.check_kernels(trainer.strategy.root_device)  # kernels this device cannot run, too
    if rewind is None:
        ckpt_path = resolve_ckpt_path(cli.config.get("ckpt_path"), run_dir)
    else:
        ckpt_path = Path(rewind["checkpoint_dir"]) / STATE_NAME
        datamodule.pending_rewind = {k: v for k, v in rewind.items() if k != "checkpoint_dir"}
    if ckpt_path is not None:
        check_checkpoint_shape(ckpt_path.parent, module.model_config)
        check_checkpoint_strategy(ckpt_path, trainer.strategy)
    if rewind is None and _is_first_process():
        _write_config(cli, run_dir)
        save_plan(plan, run_dir)
        log.info("run directory: %s", run_dir)
        log.info(plan.describe())
        log.info("resuming from %s" if ckpt_path else "starting from scratch%s",
                 ckpt_path.parent if ckpt_path else "")
    # Our checkpoints hold only tensors and plain values: load them without unpickling code.
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=str(ckpt_path) if ckpt_path else None,
                    weights_only=True)
    except LossSpike as spike:
        return _plan_rewind(spike, run_dir, module.fault.spike, datamodule, trainer.is_global_zero)
    if trainer.is_global_zero:
        _report(run_dir, cli.config.get("sample_prompt"), cli.config.get("sample_tokens"))
    return None


def _plan_rewind(spike: LossSpike, run_dir: Path, config, datamodule, log_it: bool) -> dict:
    """Where a spike rewinds to (``pretrain.training.fault.spike``), logged in one line."""
    from pretrain.training.checkpoint.layout import checkpoint_step, read_checkpoint_meta
    from pretrain.training.fault.spike import rewind_target

    not_before = max((r["to_step"] for r in datamodule.rewinds), default=0)
    target = rewind_target(run_dir, spike.step, config.rewind_steps, not_before=not_before)
    to_step = checkpoint_step(target)
    if log_it:
        first = read_checkpoint_meta(target)["samples_consumed"]
        log.warning("loss spike at step %d: loss %.4f > mean %.4f + %g × std %.4f of the last %d "
                    "steps; rewind %d of at most %d: back to checkpoint %s (step %d), skipping the "
                    "next %d batches of data (global samples %d to %d)", spike.step, spike.stats.loss,
                    spike.stats.mean, config.zscore, spike.stats.std, spike.window,
                    len(datamodule.rewinds) + 1, config.max_rewinds, target.name, to_step,
                    config.skip_batches, first, first + config.skip_batches * datamodule.samples_per_step - 1)
    return {"checkpoint_dir": str(target), "checkpoint": target.name, "to_step": to_step,
            "spike_step": spike.step, "loss": spike.stats.loss, "window_mean": spike.stats.mean,
            "window_std": spike.stats.std, "skip_batches": config.skip_batches}


def _check_distillation(module, datamodule) -> None:
    """The teacher (or its cache) must exist, be a Llama and share the shards' vocabulary."""
    if module.distill.cache is not None:
        datamodule.teacher_targets(student_vocab_size=module.model_config.vocab_size)
        return
    from pretrain.distill.teacher import check_teacher_vocab, teacher_config

    teacher = teacher_config(module.distill.teacher)
    if teacher.vocab_size != module.model_config.vocab_size:
        raise PretrainError(f"vocabulary mismatch: the teacher predicts {teacher.vocab_size} ids, the "
                            f"student {module.model_config.vocab_size} ({module.distill.teacher})")
    how = check_teacher_vocab(module.distill.teacher, datamodule.sources[0].path,
                              teacher_vocab_size=teacher.vocab_size)
    log.info("distillation: teacher %s (%s layers, dim %d) matches the shards' vocabulary by %s",
             module.distill.teacher, teacher.n_layers, teacher.dim, how)


def _is_first_process() -> bool:
    """Rank 0 before Lightning has set ranks up (launched children and srun tasks carry env vars;
    under srun every task runs this command)."""
    for variable in ("RANK", "SLURM_PROCID", "LOCAL_RANK", "NODE_RANK"):
        if os.environ.get(variable, "0") != "0":
            return False
    return True


def check_checkpoint_shape(checkpoint_dir: Path, model_config) -> None:
    """PretrainError when the checkpoint's weights have another shape than ``model_config``."""
    from pretrain.training.checkpoint.layout import read_checkpoint_meta

    saved = read_checkpoint_meta(checkpoint_dir)["model_config"]
    wanted = dataclasses.asdict(model_config)
    diff = [f"{k}={saved.get(k)} vs {wanted[k]}" for k in SHAPE_FIELDS if saved.get(k) != wanted[k]]
    if diff:
        raise PretrainError(f"checkpoint has another model shape than the config: {', '.join(diff)} "
                            f"(checkpoint vs model) ({checkpoint_dir})")


def check_checkpoint_strategy(state_path: Path, strategy) -> None:
    """A sharded (torch.distributed.checkpoint) state loads only under FSDP2, at any world size."""
    from lightning.pytorch.strategies import ModelParallelStrategy

    if state_path.is_dir() and not isinstance(strategy, ModelParallelStrategy):
        raise PretrainError(f"checkpoint is sharded (FSDP2): resume it with --trainer.strategy fsdp2 "
                            f"(any number of devices) or export it with `slm export` ({state_path.parent})")


def _cli_class():
    from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

    from pretrain.distill.config import DistillConfig
    from pretrain.training.checkpoint.callback import PeriodicCheckpoint
    from pretrain.training.fault.config import FaultConfig
    from pretrain.training.wandb_logger import WandbConfig
    import pretrain.training.parallelize  # noqa: F401  registers `strategy: fsdp2`

    class PretrainCLI(LightningCLI):
        """LightningCLI with our run-directory conventions (loggers, checkpoints, one seed)."""

        def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
            parser.add_argument("--ckpt_path", type=str | None, default=None,
                                help="checkpoint to resume: a checkpoint directory, or `last` = the "
                                     "newest complete one in the run directory (none yet: start fresh)")
            parser.add_argument("--max_tokens", type=int | None, default=None,
                                help="run length in tokens instead of trainer.max_steps (rounded up "
                                     "to whole steps of data.global_batch_tokens)")
            parser.add_argument("--verify_data", "--verify-data", action="store_true", default=False,
                                help="before any work, check every shard's sha256 against its manifest")
            parser.add_argument("--sample_prompt", type=str | None, default=None,
                                help="after training, print a sample continuing this prompt")
            parser.add_argument("--sample_tokens", type=int, default=64, help="length of that sample")
            parser.add_lightning_class_args(PeriodicCheckpoint, "checkpoint")
            parser.add_argument("--distill", type=DistillConfig | None, default=None,
                                help="knowledge distillation: teacher or cache, alpha, temperature, top_k")
            parser.add_argument("--fault", type=FaultConfig, default=FaultConfig(),
                                help="faults: step_timeout_s (hung-step watchdog) and spike "
                                     "{window, zscore, rewind_steps, skip_batches, max_rewinds}")
            parser.add_argument("--wandb", type=WandbConfig | None, default=None,
                                help="Weights & Biases: project, entity, name, mode (online|offline|disabled)")
            parser.link_arguments("seed_everything", "model.init_seed")
            parser.link_arguments("seed_everything", "data.seed")
            # One switch each: masking makes the data yield document ids; validation counts steps
            # (one training batch is one optimizer step).
            parser.link_arguments("model.document_masking", "data.document_ids")
            parser.link_arguments("data.val_every_n_steps", "trainer.val_check_interval")
            parser.link_arguments("distill", "model.distill")
            parser.link_arguments("fault", "model.fault")
            parser.link_arguments("distill", "data.distill_cache", compute_fn=_cache_of)
            parser.set_defaults({"trainer.enable_checkpointing": False,
                                 "trainer.check_val_every_n_epoch": None,
                                 "trainer.num_sanity_val_steps": 0,
                                 "trainer.default_root_dir": "runs/pretrain"})

        def before_instantiate_classes(self) -> None:
            """``max_tokens`` → ``trainer.max_steps``, before the trainer and schedule exist."""
            from pretrain.training.plan import steps_for_tokens

            max_tokens = self.config.get("max_tokens")
            if max_tokens is None:
                return
            if self.config.trainer.max_steps not in (None, -1):
                raise PretrainError(f"give the run length once: max_tokens {max_tokens} or "
                                    f"trainer.max_steps {self.config.trainer.max_steps}, not both "
                                    f"(set --trainer.max_steps -1 to use max_tokens) (max_tokens)")
            self.config.trainer.max_steps = steps_for_tokens(max_tokens, self.config.data.global_batch_tokens)

        def instantiate_trainer(self, **kwargs):
            trainer_config = self.config_init["trainer"]
            if trainer_config.get("enable_progress_bar") is not False:
                from lightning.pytorch.callbacks import ProgressBar

                from pretrain.training.progress import StepProgressBar

                callbacks = trainer_config.get("callbacks") or []
                if not any(isinstance(c, ProgressBar) for c in callbacks):
                    trainer_config["callbacks"] = [*callbacks, StepProgressBar()]
            fault = self.config_init.get("fault")
            timeout = fault.validate().step_timeout_s if fault is not None else None
            if timeout is not None:
                from pretrain.training.fault.watchdog import StepWatchdog

                trainer_config["callbacks"] = [*(trainer_config.get("callbacks") or []), StepWatchdog(timeout)]
            logger = self.config["trainer"].get("logger")
            if logger is None or logger is True:
                from pretrain.training.run_logs import MetricsCSVLogger, TensorBoardRunLogger
                from pretrain.training.wandb_logger import wandb_logger

                run_dir = self.config["trainer"]["default_root_dir"]
                kwargs["logger"] = [MetricsCSVLogger(run_dir), TensorBoardRunLogger(run_dir)]
                wandb = wandb_logger(self.config_init.get("wandb"), run_dir)
                kwargs["logger"] += [wandb] if wandb is not None else []
            trainer = super().instantiate_trainer(**kwargs)
            if timeout is not None:
                from pretrain.training.fault.watchdog import collective_timeout, set_collective_timeout

                set_collective_timeout(trainer.strategy, collective_timeout(timeout))
            return trainer

    return PretrainCLI


def _cache_of(distill) -> dict | None:
    """The data module's part of ``distill``: the cache and how many of its ids to use."""
    if distill is None:
        return None
    # jsonargparse hands over a Namespace (its init_args when given as a class), a dict or the object
    distill = getattr(distill, "init_args", distill)
    cache, top_k = (getattr(distill, "cache", None), getattr(distill, "top_k", None)) if not isinstance(
        distill, dict) else (distill.get("cache"), distill.get("top_k"))
    return None if cache is None else {"path": cache, "top_k": top_k}


def _parse(argv: list[str]):
    """Parse and instantiate; any config mistake becomes one PretrainError line."""
    from pretrain.training.datamodule import PretrainDataModule
    from pretrain.training.module import PretrainModule

    cli_class = _cli_class()
    try:
        return cli_class(
            PretrainModule, PretrainDataModule, run=False, args=argv,
            save_config_callback=None, seed_everything_default=1234,
            parser_kwargs={"prog": "slm pretrain", "exit_on_error": False},
            auto_configure_optimizers=False,
        )
    except argparse.ArgumentError as e:
        raise PretrainError(_one_line(str(e))) from None


def _quiet_lightning() -> None:
    """Lightning logs through its own handlers (duplicating our root handler's lines) and warns
    about things that are intended here; keep its messages, once, and drop those warnings."""
    import warnings

    import lightning  # noqa: F401  (adds its handlers on import: remove them after)

    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    warnings.filterwarnings("ignore", message=".*LightningCLI's args parameter is intended.*")
    warnings.filterwarnings("ignore", message=".*`srun` command is available on your system.*")
    warnings.filterwarnings("ignore", message=".*IterableDataset` has `__len__` defined.*")
    warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\)` is deprecated.*")


def _one_line(message: str) -> str:
    """jsonargparse's multi-line messages ("Parser key "x":\\n  Expected ...") in one line."""
    lines = [line.strip(" -") for line in message.strip().splitlines() if line.strip(" -")]
    return "; ".join(lines[:3]) + " (slm pretrain)"


def _write_config(cli, run_dir: Path) -> None:
    text = cli.parser.dump(cli.config, skip_none=False, skip_check=True)
    write_atomic(run_dir / CONFIG_NAME, "# Resolved config of the latest `slm pretrain` invocation "
                                        "in this directory.\n" + text)


def _report(run_dir: Path, sample_prompt: str | None, sample_tokens: int | None) -> None:
    from pretrain.training.checkpoint.layout import latest_checkpoint
    from pretrain.training.run_logs import plot_loss

    plot = plot_loss(run_dir)
    checkpoint = latest_checkpoint(run_dir)
    if sample_prompt is not None and checkpoint is not None:
        from pretrain.export import generate_text

        text = generate_text(checkpoint, sample_prompt, max_new_tokens=sample_tokens or 64,
                             temperature=0.8, top_k=50, seed=0)
        print(f"\n--- sample (prompt {sample_prompt!r}) ---\n{text}\n---")
    print(f"checkpoint: {checkpoint}")
    print(f"metrics:    {run_dir / 'metrics.csv'}  (TensorBoard: tensorboard --logdir {run_dir / 'tensorboard'})")
    print(f"loss plot:  {plot}")
