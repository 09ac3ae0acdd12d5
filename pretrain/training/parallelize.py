"""Parallelism applied to ``model.Llama`` from the outside, in torchtitan's order:
activation checkpointing → ``torch.compile`` → FSDP2, each per transformer block.

The model stays a plain ``nn.Module``. Under ``FSDP2Strategy`` (Lightning's
``ModelParallelStrategy`` set up for pure data parallelism, registered as ``strategy: fsdp2``)
every block and then the root are ``fully_shard``-ed: over all ranks on one node, or as HSDP
(shard within a node, replicate across nodes) when ``num_nodes > 1``. It runs on CPU with gloo,
which is how the tests exercise it; single device and DDP use the same model without sharding.

Initialisation is meta-device construction + ``to_empty`` + ``init_weights()`` on GPU (no rank
ever holds the full fp32 model), and full construction on CPU, where models are small and where
initialising the full tensor before sharding makes an N-rank run bit-identical to a 1-rank run.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial

import torch
from lightning.pytorch.strategies import ModelParallelStrategy, StrategyRegistry
from torch import nn

from model.kernels.fused_ops import FusedOps, apply_fused_ops
from pretrain.errors import PretrainError
from pretrain.training.float8 import check_float8_device, convert_to_float8

log = logging.getLogger(__name__)

AC_MODES = ("none", "full", "selective")


class FSDP2Strategy(ModelParallelStrategy):
    """FSDP2 data parallelism over every rank (``hsdp=True`` and several nodes: shard within a
    node, replicate across nodes). Checkpoints are torch.distributed.checkpoint directories."""

    def __init__(self, hsdp: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.hsdp = hsdp
        self._hsdp_mesh = None

    def setup_environment(self) -> None:
        # Pure data parallelism: one data-parallel dimension spanning all ranks, no tensor parallel.
        self._data_parallel_size = self.num_nodes * self.num_processes
        self._tensor_parallel_size = 1
        super().setup_environment()

    @property
    def fsdp_mesh(self):
        """The mesh ``fully_shard`` uses: 1-D over all ranks, or 2-D (replicate, shard) for HSDP."""
        if self.hsdp and self.num_nodes > 1:
            if self._hsdp_mesh is None:
                from torch.distributed.device_mesh import init_device_mesh

                self._hsdp_mesh = init_device_mesh(
                    self.root_device.type, (self.num_nodes, self.num_processes),
                    mesh_dim_names=("replicate", "shard"))
            return self._hsdp_mesh
        return self.device_mesh["data_parallel"]


if "fsdp2" not in StrategyRegistry:
    StrategyRegistry.register("fsdp2", FSDP2Strategy, description="FSDP2 (fully_shard per block), HSDP across nodes")


@dataclass(frozen=True)
class KernelChoice:
    """Kernel options of a run, each with the config key or flag that names it in errors."""

    attention: str = "auto"
    fused_ce: str = "auto"
    fused_ops: str = "none"
    float8: bool = False
    keys: tuple[str, str, str, str] = ("model.attention_backend", "model.fused_ce",
                                       "model.fused_ops", "model.float8")


def check_kernels(choice: KernelChoice, config, device: torch.device) -> tuple[str, FusedOps]:
    """One-line ``PretrainError`` (naming the key) for a kernel ``device`` cannot run: an
    attention backend or ``liger`` without its package or off CUDA, float8 below sm89. Returns
    what ``fused_ce`` runs as there and the fused ops ``fused_ops`` means there."""
    from model.kernels.attention_backends import check_backend
    from model.kernels.cross_entropy import resolve_implementation
    from model.kernels.fused_ops import resolve_fused_ops
    from model.kernels.optional import import_optional

    attention_key, fused_ce_key, fused_ops_key, float8_key = choice.keys
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    with naming(attention_key):
        check_backend(choice.attention, torch.empty(1, 1, config.n_heads, config.head_dim,
                                                    device=device, dtype=dtype, requires_grad=True))
    if choice.float8:
        check_float8_device(device, float8_key)
    with naming(fused_ce_key):
        fused_ce = resolve_implementation(choice.fused_ce, device)
        if fused_ce == "liger":
            import_optional("liger_kernel.transformers", "fused cross-entropy 'liger'")
    with naming(fused_ops_key):
        return fused_ce, resolve_fused_ops(choice.fused_ops, device)


@contextmanager
def naming(key: str):
    """A kernel's one-line ``ValueError`` becomes a ``PretrainError`` ending ``(<key>)``."""
    try:
        yield
    except PretrainError:
        raise
    except ValueError as e:
        raise PretrainError(f"{e} ({key})") from e


def build_parallel_model(config, device: torch.device, mesh=None, *, init_seed: int,
                         mixed_precision: str = "bf16", fused_ops: str | FusedOps = "none",
                         float8: bool = False, activation_checkpointing: str = "none",
                         compile: bool = False, fsdp_param_dtype: torch.dtype | None = None) -> nn.Module:
    """Construct, parallelise, materialise and initialise a ``Llama`` on ``device``, sharded
    with FSDP2 over ``mesh`` when given: fused kernels, float8 linears, then activation
    checkpointing, compile and FSDP2, in that order (check the kernels first: ``check_kernels``).
    The initial weights depend only on ``(config, init_seed)``, not on the mesh or world size
    (on GPU with FSDP2, DTensor's RNG keeps sharded initialisation equal to unsharded).
    ``fsdp_param_dtype`` overrides the FSDP2 policy's compute dtype (default: bf16 on CUDA with
    ``mixed_precision="bf16"``, else fp32); ``pretrain.memory_estimate`` sets bf16 on CPU."""
    from model import Llama

    sharded = mesh is not None
    meta_init = sharded and device.type != "cpu"
    init_device = torch.device("meta") if meta_init else (torch.device("cpu") if sharded else device)
    with torch.device(init_device):
        model = Llama(config)
    if not meta_init:
        _init_weights(model, init_seed, device)
    apply_fused_ops(model, fused_ops, device)
    if float8:
        convert_to_float8(model)
    apply_activation_checkpointing(model, activation_checkpointing)
    if compile:
        apply_compile(model)
    if sharded:
        param_dtype = fsdp_param_dtype or (
            torch.bfloat16 if mixed_precision == "bf16" and device.type == "cuda" else torch.float32)
        apply_fsdp(model, mesh, param_dtype=param_dtype)
    if meta_init:
        model.to_empty(device=device)
        _init_weights(model, init_seed, device)
    else:
        model.to(device)
    return model


def build_parallel_teacher(path: str, device: torch.device, mesh=None, *,
                           mixed_precision: str = "bf16") -> nn.Module:
    """The frozen distillation teacher at ``path`` (``pretrain.distill.teacher.load_teacher``),
    on ``device`` and, under FSDP2, sharded like the student (same mesh and policy) so no rank
    holds its whole weights during training."""
    from pretrain.distill.teacher import load_teacher

    teacher = load_teacher(path)  # fp32 on CPU; sharding and the policy's cast come next
    if mesh is not None:
        param_dtype = torch.bfloat16 if mixed_precision == "bf16" and device.type == "cuda" else torch.float32
        apply_fsdp(teacher, mesh, param_dtype=param_dtype)
    elif device.type == "cuda" and mixed_precision == "bf16":
        teacher.to(torch.bfloat16)
    return teacher.to(device)


def fsdp_mesh(strategy):
    """The mesh FSDP2 shards over under ``strategy``, or None when it does not shard."""
    return strategy.fsdp_mesh if isinstance(strategy, FSDP2Strategy) else None


def _init_weights(model: nn.Module, seed: int, device: torch.device) -> None:
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        model.init_weights()


def apply_activation_checkpointing(model: nn.Module, mode: str) -> None:
    """Wrap each block: ``full`` recomputes the whole block in backward; ``selective`` saves the
    outputs of matmuls and attention and recomputes only cheap element-wise ops and norms."""
    if mode == "none":
        return
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper
    from torch.utils.checkpoint import create_selective_checkpoint_contexts

    kwargs = {}
    if mode == "selective":
        kwargs["context_fn"] = partial(create_selective_checkpoint_contexts, _save_matmuls_policy)
    for index, block in enumerate(model.layers):
        model.layers[index] = checkpoint_wrapper(block, preserve_rng_state=False, **kwargs)


def _save_matmuls_policy(ctx, op, *args, **kwargs):
    from torch.utils.checkpoint import CheckpointPolicy

    return CheckpointPolicy.MUST_SAVE if op in _SAVED_OPS else CheckpointPolicy.PREFER_RECOMPUTE


_SAVED_OPS = {
    torch.ops.aten.mm.default,
    torch.ops.aten.addmm.default,
    torch.ops.aten.bmm.default,
    torch.ops.aten._scaled_dot_product_flash_attention.default,
    torch.ops.aten._scaled_dot_product_efficient_attention.default,
    torch.ops.aten._scaled_dot_product_cudnn_attention.default,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu.default,
    torch.ops.aten._scaled_mm.default,  # float8 matmuls
}


def apply_compile(model: nn.Module) -> None:
    """``torch.compile(fullgraph=True)`` each block's ``forward``, before ``fully_shard``.

    As torchtitan does, the compiled region is the block's own computation and FSDP2's hooks
    (all-gather before, reshard after), which ``fully_shard`` registers on the block, run
    outside it: ``nn.Module.__call__`` runs the hooks and then calls ``forward``.
    (``block.compile()`` would compile ``__call__``, hooks included; torchtitan's
    ``torch.compile(block)`` wrapper would prefix every key with ``_orig_mod.``.) The module
    tree, parameter names and checkpoint keys are those of the eager model."""
    for block in model.layers:
        block.forward = torch.compile(block.forward, fullgraph=True)


def apply_fsdp(model: nn.Module, mesh, *, param_dtype: torch.dtype = torch.float32) -> None:
    """``fully_shard`` each block, then the root (embeddings, final norm, output head).
    The last block keeps its parameters gathered after forward: backward starts with it.

    ``forward_hidden`` is registered as a forward method of the root, so calling it directly
    (the fused LM head + cross-entropy loss does) all-gathers like ``forward``. The root is not
    resharded after forward, so until backward ``model.output.weight`` is the unsharded
    parameter (a plain tensor) that the loss multiplies by and accumulates gradients into."""
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard, register_fsdp_forward_method

    policy = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=torch.float32)
    # A block's floating-point inputs are the hidden states, already in ``param_dtype`` (they
    # come from the embedding and the blocks, which compute in it), and the rotary cos/sin
    # tables, float32 by contract: left to the default ``cast_forward_inputs=True``, FSDP2
    # would round the tables to bf16, unlike single-device (autocast) training and evaluation.
    block_policy = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=torch.float32,
                                        cast_forward_inputs=False)
    last = len(model.layers) - 1
    for index, block in enumerate(model.layers):
        fully_shard(block, mesh=mesh, mp_policy=block_policy, reshard_after_forward=index < last)
    fully_shard(model, mesh=mesh, mp_policy=policy, reshard_after_forward=False)
    register_fsdp_forward_method(model, "forward_hidden")


def grad_norm(model: nn.Module) -> torch.Tensor:
    """Global L2 norm of all gradients (over every rank's shards) as a plain (replicated) tensor."""
    norm = torch.nn.utils.get_total_norm([p.grad for p in model.parameters() if p.grad is not None],
                                         norm_type=2.0)
    if hasattr(norm, "full_tensor"):  # a DTensor under FSDP2: reduce the partial norms
        norm = norm.full_tensor()
    return norm


def clip_grad_norm(model: nn.Module, max_norm: float) -> torch.Tensor:
    """Global L2 norm of all gradients (over every rank's shards), clipped to ``max_norm`` in
    place when finite. Returns the norm before clipping as a plain (replicated) tensor."""
    params = [p for p in model.parameters() if p.grad is not None]
    norm = grad_norm(model)
    if max_norm != float("inf") and torch.isfinite(norm):
        torch.nn.utils.clip_grads_with_norm_(params, max_norm, norm)
    return norm
