"""Whether a context starts with BOS: as lm-evaluation-harness's ``hf`` backend decides when its
``add_bos_token`` is left unset (lm-eval ≥ 0.4.9), unless ``--bos`` / ``--no-bos`` say.

lm-eval then encodes every context with the tokenizer's own default, so BOS comes first exactly
when ``AutoTokenizer.from_pretrained(DIR).encode(text)`` puts it there. That is read here from
the tokenizer's Hugging Face files, without importing transformers:

- ``tokenizer.json``: its post-processor's template for a single sequence (transformers ≥ 5
  reads only this; ours, ``tokenizer/hf.py``, starts with BOS). A ``tokenizer_config.json``
  whose ``add_bos_token`` contradicts it is an error: transformers 4 follows the config, 5 the
  template, so the answer would depend on the installed version;
- else ``tokenizer_config.json``'s ``add_bos_token``;
- else (a bare ``tokenizer.model``) ``LlamaTokenizer``'s default, BOS, with a warning.

Our checkpoints are answered from their tokenizer directory: ``slm export`` copies these files,
so the answer is the one ``lm_eval --model hf`` gives on the export.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from pretrain.errors import PretrainError

log = logging.getLogger(__name__)

FLAG, TOKENIZER = "flag", "tokenizer"


@dataclass(frozen=True)
class Bos:
    """``bos``: whether contexts start with BOS; ``source``: ``flag`` (--bos/--no-bos) or
    ``tokenizer`` (its files, as lm-eval's default); ``why``: one line for the log."""

    bos: bool
    source: str
    why: str


def resolve_bos(flag: bool | None, tokenizer_dir: str | Path, bos_id: int) -> Bos:
    """``flag`` when given (True/False), else what the tokenizer in ``tokenizer_dir`` (or beside
    a bare ``.model`` file) says."""
    if flag is not None:
        return Bos(bool(flag), FLAG, f"--{'' if flag else 'no-'}bos")
    directory = Path(tokenizer_dir)
    adds, why = tokenizer_adds_bos(directory if directory.is_dir() else directory.parent, bos_id)
    return Bos(adds, TOKENIZER, why)


def _read_json(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PretrainError(f"cannot read tokenizer file: {e} ({path})") from None
    if not isinstance(data, dict):
        raise PretrainError(f"tokenizer file is not a JSON object ({path})")
    return data


def _template_first_id(processor: dict | None, path: Path) -> int | None:
    """The id a post-processor puts before a single sequence, None if none."""
    if not processor:
        return None
    kind = processor.get("type")
    if kind == "Sequence":
        firsts = [_template_first_id(p, path) for p in processor.get("processors", [])]
        return next((f for f in firsts if f is not None), None)
    if kind in ("BertProcessing", "RobertaProcessing"):
        return int(processor["cls"][1])
    if kind != "TemplateProcessing":
        return None
    first = (processor.get("single") or [{}])[0]
    if "SpecialToken" not in first:
        return None
    name = first["SpecialToken"]["id"]
    ids = processor.get("special_tokens", {}).get(name, {}).get("ids", [])
    if len(ids) != 1:
        raise PretrainError(f"the post-processor's first token {name!r} is {len(ids)} ids, "
                            f"not one (post_processor in {path})")
    return int(ids[0])


def tokenizer_adds_bos(tokenizer_dir: Path, bos_id: int) -> tuple[bool, str]:
    """(whether the tokenizer's HF files put BOS first, where that was read); see the module
    docstring. PretrainError (what, file) for unreadable or contradicting files, and for a
    template that starts with a token other than BOS (lm-eval would score after it)."""
    config = _read_json(tokenizer_dir / "tokenizer_config.json") or {}
    configured = config.get("add_bos_token")
    if configured is not None and not isinstance(configured, bool):
        raise PretrainError(f"add_bos_token must be true or false, got {configured!r} "
                            f"({tokenizer_dir / 'tokenizer_config.json'})")
    tokenizer_json = tokenizer_dir / "tokenizer.json"
    fast = _read_json(tokenizer_json)
    if fast is not None:
        first = _template_first_id(fast.get("post_processor"), tokenizer_json)
        if first is not None and first != bos_id:
            raise PretrainError(f"the tokenizer puts id {first} before every text, not BOS "
                                f"({bos_id}); unsupported, pass --bos or --no-bos ({tokenizer_json})")
        adds = first == bos_id
        if configured is not None and configured != adds:
            raise PretrainError(
                f"tokenizer_config.json says add_bos_token={str(configured).lower()} but "
                f"tokenizer.json's post-processor {'adds' if adds else 'adds no'} BOS "
                f"(transformers 4 follows the first, 5 the second); pass --bos or --no-bos ({tokenizer_dir})")
        return adds, f"tokenizer.json's post-processor ({tokenizer_json})"
    if configured is not None:
        return configured, f"add_bos_token in {tokenizer_dir / 'tokenizer_config.json'}"
    log.warning("%s has no tokenizer.json or add_bos_token in tokenizer_config.json: BOS "
                "assumed, LlamaTokenizer's default; pass --no-bos if the model was not trained "
                "with it", tokenizer_dir)
    return True, f"LlamaTokenizer's default, no HF tokenizer files in {tokenizer_dir}"
