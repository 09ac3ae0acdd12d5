"""The perplexity band (Ankner et al. 2024, "Perplexed by Perplexity"): a small reference model
scores each document's mean per-token loss; documents in one band of the corpus's loss
distribution are kept.

Two passes, both deterministic: `ReferenceScorer` stores each document's loss; after dedup,
`BandCutpoints` (one task) reads every loss and writes the band's cut points; `BandFilter`
keeps the documents inside them. The bands, for kept fraction f of the documents:
low = the f with the lowest loss, high = the f with the highest, medium = the f around the
median. Ties at a cut point are kept, so at most a handful more than f may be kept.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.filters.base_filter import BaseFilter

from data import DataError

CUTPOINTS_FILE = "band.json"


def check_reference_model(model_dir: str | Path, tokenizer_path: str | Path) -> dict:
    """Load-check the reference model (an HF directory, `slm export`'s output) against the
    recipe's tokenizer before any work; returns what the report records. Raises DataError
    when the model is missing or unreadable or was trained with another tokenizer."""
    from model import ModelError
    from model.hf import load_pretrained
    from tokenizer import TokenizerError
    from tokenizer.sentencepiece_tokenizer import MODEL_FILE, load

    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise DataError(f"no such reference model directory ({model_dir})")
    try:
        tokenizer = load(tokenizer_path)
    except TokenizerError as e:
        raise DataError(f"band.tokenizer: {e}") from None
    try:
        model = load_pretrained(model_dir)
    except ModelError as e:
        raise DataError(f"reference model: {e}") from None
    if model.config.vocab_size != tokenizer.vocab_size:
        raise DataError(f"the reference model's vocabulary ({model.config.vocab_size} ids) is "
                        f"not the recipe tokenizer's ({tokenizer.vocab_size} ids, "
                        f"{tokenizer_path}) ({model_dir})")
    own = model_dir / MODEL_FILE
    if own.is_file():  # `slm export` copies the tokenizer in: compare identities
        own_fingerprint = load(own).fingerprint
        if own_fingerprint != tokenizer.fingerprint:
            raise DataError(f"the reference model was trained with another tokenizer "
                            f"(fingerprint {own_fingerprint[:12]}, the recipe's "
                            f"{tokenizer.fingerprint[:12]} from {tokenizer_path}) ({model_dir})")
    return {"model": str(model_dir), "tokenizer": str(tokenizer_path),
            "tokenizer_fingerprint": tokenizer.fingerprint,
            "parameters": sum(p.numel() for p in model.parameters())}


class ReferenceScorer(PipelineStep):
    """Adds ``reference_loss``: the reference model's mean next-token loss (nats) over the
    document's first `max_tokens` tokens (BOS prepended, as in training)."""

    type = "🔢 - SCORER"
    name = "reference-model loss"

    def __init__(self, model_dir: str, tokenizer_path: str, max_tokens: int = 1024):
        super().__init__()
        self.model_dir = str(model_dir)
        self.tokenizer_path = str(tokenizer_path)
        self.max_tokens = max_tokens

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1):
        import torch
        import torch.nn.functional as F

        from model.hf import load_pretrained
        from tokenizer.sentencepiece_tokenizer import load

        torch.set_num_threads(1)  # one core per task: the executor runs tasks side by side
        model = load_pretrained(self.model_dir)
        tokenizer = load(self.tokenizer_path, num_threads=1)
        context = min(self.max_tokens, model.config.max_seq_len + 1)
        bos = [tokenizer.bos_id] if tokenizer.bos_id is not None and tokenizer.bos_id >= 0 else []
        with torch.inference_mode():
            for doc in data:
                ids = (bos + tokenizer.encode(doc.text))[:context]
                if len(ids) < 2:
                    loss = math.inf  # nothing to predict: never inside a band
                else:
                    tokens = torch.tensor([ids])
                    logits = model(tokens[:, :-1])
                    loss = F.cross_entropy(logits[0].float(), tokens[0, 1:]).item()
                doc.metadata["reference_loss"] = loss
                self.stat_update("scored")
                yield doc


def band_cutpoints(losses: list[float], keep: str, fraction: float) -> tuple[float, float]:
    """The (low, high) losses bounding the band; inclusive."""
    finite = sorted(x for x in losses if math.isfinite(x))
    if not finite:
        return math.inf, -math.inf  # nothing can be kept
    n = len(finite)
    count = max(1, round(fraction * n))
    start = {"low": 0, "high": n - count, "medium": (n - count) // 2}[keep]
    return finite[start], finite[start + count - 1]


class BandCutpoints(PipelineStep):
    """One task: reads every document's loss from the previous pass's files and writes the cut
    points to ``output_folder/band.json``."""

    type = "🔢 - SCORER"
    name = "band cut points"

    def __init__(self, input_folder: str, tasks: int, output_folder: str, keep: str,
                 fraction: float):
        super().__init__()
        self.input_folder, self.output_folder = str(input_folder), str(output_folder)
        self.tasks = tasks
        self.keep, self.fraction = keep, fraction

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1):
        from data.curate.steps import task_file
        from tokenizer.atomic import write_json_atomic
        from tokenizer.corpus import iter_records

        losses = [record.fields["reference_loss"]
                  for task in range(self.tasks)
                  for record in iter_records(task_file(self.input_folder, task))]
        low, high = band_cutpoints(losses, self.keep, self.fraction)
        finite = sorted(x for x in losses if math.isfinite(x))
        write_json_atomic(Path(self.output_folder) / CUTPOINTS_FILE, {
            "keep": self.keep, "fraction": self.fraction, "documents": len(losses),
            "low_loss": low, "high_loss": high,
            "median_loss": finite[len(finite) // 2] if finite else None})
        self.stat_update("documents", value=len(losses))
        return iter(())


class BandFilter(BaseFilter):
    name = "🔢 perplexity band"

    def __init__(self, cutpoints_folder: str, exclusion_writer=None):
        super().__init__(exclusion_writer)
        self.cutpoints_folder = str(cutpoints_folder)
        self._band = None

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        if self._band is None:
            self._band = json.loads((Path(self.cutpoints_folder) / CUTPOINTS_FILE).read_text())
        loss = doc.metadata["reference_loss"]
        if loss < self._band["low_loss"]:
            return False, "band_below"
        if loss > self._band["high_loss"] or not math.isfinite(loss):
            return False, "band_above"
        return True
