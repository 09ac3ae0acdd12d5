"""The teacher: a frozen `model.Llama` and the check that it speaks the shards' vocabulary.

A teacher is an HF Llama-family directory (`config.json` + weights: our `slm export` output or
a real Llama checkpoint, read by `model.hf.load_pretrained`) or one of our runs or checkpoints
(read by `pretrain.export.load_model`). Its tokenizer is found beside it: the HF directory's
tokenizer files, or the `tokenizer_dir` our checkpoints record in `meta.json`.

Every user mistake is one `PretrainError("<what> (<where>)")`: a missing path, a directory
that is not a Llama, a vocabulary that is not the shards'.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import torch

from pretrain.errors import PretrainError

log = logging.getLogger(__name__)

# Prose, code, digits and several scripts: two tokenizers that agree on all of it agree on ids.
PROBE_TEXT = ("The teacher's tokens must be the student's: 3.14159, 2048 and 1e-6!\n"
              "def f(x):\n\treturn [i ** 2 for i in range(x)]  # squares\n"
              "Ünïcödé café, 今天天气很好, Привет, مرحبا, 😀 <s></s> ▁end")


def teacher_kind(path: str | os.PathLike) -> str:
    """``"hf"`` (a directory with config.json) or ``"checkpoint"`` (a run directory, a checkpoint
    directory or its lightning.ckpt); `PretrainError` if missing or neither."""
    from pretrain.training.checkpoint.layout import CHECKPOINTS_DIR, META_NAME, STATE_NAME

    path = Path(path)
    if not path.exists():
        raise PretrainError(f"teacher not found ({path})")
    if path.is_dir() and (path / "config.json").is_file():
        return "hf"
    if path.name == STATE_NAME or (path.is_dir() and any(
            (path / name).exists() for name in (CHECKPOINTS_DIR, META_NAME, STATE_NAME))):
        return "checkpoint"
    raise PretrainError("teacher is not a Llama: neither an HF directory (config.json) nor a "
                        f"run or checkpoint directory ({path})")


def teacher_config(path: str | os.PathLike):
    """The teacher's ``LlamaConfig`` without loading its weights; `PretrainError` for a path
    that is missing or not a Llama."""
    import json

    from model import LlamaConfig, ModelError
    from model.hf import config_from_hf

    path = Path(path)
    try:
        if teacher_kind(path) == "hf":
            return config_from_hf(json.loads((path / "config.json").read_text()), str(path / "config.json"))
        from pretrain.training.checkpoint.layout import read_checkpoint_meta

        return LlamaConfig(**read_checkpoint_meta(path)["model_config"])
    except (ModelError, ValueError, TypeError) as e:
        if isinstance(e, PretrainError):
            raise
        raise PretrainError(f"teacher is not a Llama: {e} ({path})") from None


def load_teacher(path: str | os.PathLike, *, dtype: torch.dtype = torch.float32,
                 device: torch.device | str = "cpu"):
    """The teacher at `path` as a frozen `model.Llama`: eval mode, every parameter with
    requires_grad False, in `dtype` (float32 on CPU; bfloat16 on GPU) on `device`.

    Raises `PretrainError` for a missing path, a directory that is not a Llama (HF config of
    another model type, unreadable weights, no complete checkpoint in a run directory).
    """
    from model import ModelError

    kind = teacher_kind(path)
    try:
        if kind == "hf":
            from model.hf import load_pretrained

            model = load_pretrained(path, dtype=torch.float32)
        else:
            from pretrain.export import load_model

            model = load_model(path)
    except ModelError as e:
        raise PretrainError(f"teacher is not a loadable Llama: {e}") from None
    model.requires_grad_(False)
    return model.to(device=device, dtype=dtype).eval()


def teacher_fingerprint(model) -> str:
    """sha256 hex of a model's parameters (names, shapes, float32 bytes in name order): the
    identity a cache records, whatever file format the weights came from."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(f"{name}:{tuple(tensor.shape)};".encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


def teacher_tokenizer_dir(path: str | os.PathLike) -> Path | None:
    """Where the teacher's tokenizer is: the HF directory if it holds tokenizer files, the
    `tokenizer_dir` recorded by our checkpoint if it still exists, else None."""
    from model.hf import TOKENIZER_FILES

    path = Path(path)
    if teacher_kind(path) == "hf":
        return path if any((path / name).is_file() for name in TOKENIZER_FILES[:2]) else None
    from pretrain.training.checkpoint.layout import read_checkpoint_meta

    recorded = read_checkpoint_meta(path).get("tokenizer_dir")
    return Path(recorded) if recorded and Path(recorded).is_dir() else None


def _sentencepiece_fingerprint(directory: Path) -> str | None:
    from tokenizer.sentencepiece_tokenizer import MODEL_FILE, model_fingerprint

    model_file = directory / MODEL_FILE
    return model_fingerprint(model_file.read_bytes()) if model_file.is_file() else None


def _vocab_and_probe_ids(directory: Path) -> tuple[int, list[int]]:
    """(vocabulary size, ids of PROBE_TEXT without specials) by our sentencepiece loader, or by
    transformers' AutoTokenizer for a tokenizer.json-only directory."""
    from tokenizer.sentencepiece_tokenizer import MODEL_FILE

    if (directory / MODEL_FILE).is_file():
        import tokenizer

        loaded = tokenizer.load(directory)
        return loaded.vocab_size, loaded.encode(PROBE_TEXT)
    try:
        from transformers import AutoTokenizer
    except ImportError:
        raise PretrainError("reading a tokenizer.json needs transformers: pip install "
                            f"'slm-pretrain[hf]' ({directory})") from None
    loaded = AutoTokenizer.from_pretrained(str(directory))
    return len(loaded), loaded.encode(PROBE_TEXT, add_special_tokens=False)


def check_teacher_vocab(teacher: str | os.PathLike, data_dir: str | os.PathLike, *,
                        teacher_vocab_size: int | None = None) -> str:
    """Check that the teacher at `teacher` uses the tokenizer of the shards in `data_dir`;
    return how that was established (for the log).

    Equal sentencepiece fingerprints (sha256 of tokenizer.model, as the manifest records) settle
    it. Otherwise both tokenizers are loaded (the shards' from the manifest's `tokenizer.path`)
    and must have the same vocabulary size and encode `PROBE_TEXT` to the same ids.
    `teacher_vocab_size` (the teacher model's output width) must cover the shards' ids.
    Raises `PretrainError` on a mismatch or when the teacher has no tokenizer to compare.
    """
    from data import DataError
    from data.shards import read_manifest

    teacher = Path(teacher)
    try:
        shard_tokenizer = read_manifest(data_dir)["tokenizer"]
    except DataError as e:
        raise PretrainError(str(e)) from None
    if teacher_vocab_size is not None and teacher_vocab_size < shard_tokenizer["vocab_size"]:
        raise PretrainError(f"vocabulary mismatch: the teacher predicts {teacher_vocab_size} ids, "
                            f"the shards' tokenizer has {shard_tokenizer['vocab_size']} ({teacher})")
    teacher_dir = teacher_tokenizer_dir(teacher)
    if teacher_dir is None:
        raise PretrainError("cannot check the teacher's vocabulary: no tokenizer files with it "
                            f"(copy its tokenizer.model or tokenizer.json there) ({teacher})")
    if _sentencepiece_fingerprint(teacher_dir) == shard_tokenizer["fingerprint"]:
        return f"tokenizer fingerprint {shard_tokenizer['fingerprint'][:12]}"
    shard_dir = Path(shard_tokenizer.get("path") or "")
    if not shard_tokenizer.get("path") or not shard_dir.is_dir():
        raise PretrainError("vocabulary mismatch: the teacher's tokenizer is not the one the "
                            "shards record, and the shards' tokenizer is gone so ids cannot be "
                            f"compared ({teacher_dir} vs {data_dir})")
    teacher_vocab, teacher_ids = _vocab_and_probe_ids(teacher_dir)
    shard_vocab, shard_ids = _vocab_and_probe_ids(shard_dir)
    if teacher_vocab != shard_vocab or teacher_ids != shard_ids:
        what = (f"{teacher_vocab} vs {shard_vocab} ids" if teacher_vocab != shard_vocab
                else "a probe text encodes to different ids")
        raise PretrainError(f"vocabulary mismatch between the teacher and the shards: {what} "
                            f"({teacher_dir} vs {shard_dir})")
    log.info("teacher tokenizer differs in bytes from the shards' but agrees on the vocabulary "
             "size and a probe text (%s)", teacher_dir)
    return "vocabulary size and probe-text ids"
