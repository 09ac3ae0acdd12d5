"""The model card of a release: `README.md` with YAML front matter, and `loss.png`, the training
loss curve up to the released step (read from `RUN_DIR/metrics.csv`)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CardMetadata:
    """What the model card's YAML front matter says beyond what the checkpoint knows.

    `datasets` are Hub dataset ids (e.g. `cerebras/SlimPajama-627B`); `languages` are ISO 639-1
    codes. The Hub indexes the model by these fields.
    """

    license: str = "apache-2.0"
    datasets: tuple[str, ...] = ()
    languages: tuple[str, ...] = ("en",)
    tags: tuple[str, ...] = ()


BASE_TAGS = ("llama", "text-generation", "pretraining", "intermediate-checkpoint", "slm-pretrain")


@dataclass(frozen=True)
class LossPoint:
    """One row of metrics.csv: training `loss` and/or `val_loss` at `step` / `tokens_seen`."""

    step: int
    tokens_seen: int
    loss: float | None
    val_loss: float | None


def _number(text: str | None) -> float | None:
    if text is None or text.strip() == "":
        return None
    value = float(text)
    return value if math.isfinite(value) else None


def read_loss_history(metrics_csv: Path, max_step: int) -> list[LossPoint]:
    """The rows of `metrics_csv` (see `pretrain.training.run_logs`) at steps <= `max_step` that carry a
    loss or a val_loss; rows without `tokens_seen` are skipped."""
    from pretrain.training.run_logs import read_metrics

    points = []
    for row in read_metrics(metrics_csv):
        step, tokens_seen = _number(row.get("step")), _number(row.get("tokens_seen"))
        if step is None or tokens_seen is None or step > max_step:
            continue
        loss, val_loss = _number(row.get("loss")), _number(row.get("val_loss"))
        if loss is not None or val_loss is not None:
            points.append(LossPoint(int(step), int(tokens_seen), loss, val_loss))
    return points


def plot_loss_curve(points: list[LossPoint], out_png: Path, title: str) -> None:
    """Training loss (line) and validation loss (dots) against tokens seen (in K/M/B/T).

    Uses the object-oriented Agg canvas rather than pyplot: the HubRelease callback renders from
    a background thread, and pyplot's global state is not thread-safe.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    most = max((p.tokens_seen for p in points), default=0)
    unit, scale = next(((u, s) for u, s in (("trillions", 1e12), ("billions", 1e9),
                                           ("millions", 1e6), ("thousands", 1e3)) if most >= s),
                       ("", 1.0))
    fig = Figure(figsize=(7, 4), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    train = [p for p in points if p.loss is not None]
    val = [p for p in points if p.val_loss is not None]
    if train:
        ax.plot([p.tokens_seen / scale for p in train], [p.loss for p in train],
                lw=1, label="train loss")
    if val:
        ax.plot([p.tokens_seen / scale for p in val], [p.val_loss for p in val],
                "o-", ms=3, label="validation loss")
    ax.set_xlabel(f"tokens seen ({unit})" if unit else "tokens seen")
    ax.set_ylabel("cross-entropy loss (nats/token)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_png)


def _yaml_block(data) -> str:
    import yaml

    try:
        return yaml.safe_dump(data, sort_keys=False, default_flow_style=False).rstrip()
    except yaml.representer.RepresenterError:
        # A config holding a non-plain value still gets shown, as JSON with str() fallbacks.
        return json.dumps(data, indent=2, default=str)


def render_model_card(*, repo_id: str, revision: str, step: int, tokens_seen: int,
                      model_config: dict, run_config: dict | None, param_count: int | None,
                      card: CardMetadata, has_loss_plot: bool) -> str:
    """README.md text: YAML front matter (license, datasets, language, library_name, tags,
    pipeline_tag) then a body with the training progress, architecture, loss curve, how to load
    this revision, and the resolved training config."""
    import yaml

    from pretrain.training.checkpoint.layout import format_tokens

    front = {
        "license": card.license,
        "library_name": "transformers",
        "pipeline_tag": "text-generation",
        "language": list(card.languages),
        "datasets": list(card.datasets),
        "tags": list(dict.fromkeys(BASE_TAGS + tuple(card.tags))),
    }
    if not card.datasets:
        del front["datasets"]  # unknown: say nothing rather than an empty list
    name = repo_id.split("/")[-1]
    arch_keys = ("vocab_size", "dim", "n_layers", "n_heads", "n_kv_heads", "ffn_dim",
                 "max_seq_len", "rope_theta", "norm_eps", "tie_embeddings")
    arch_rows = "\n".join(f"| `{k}` | {model_config[k]} |" for k in arch_keys if k in model_config)
    params = f"{param_count:,}" if param_count is not None else "unknown"
    lines = [
        "---",
        yaml.safe_dump(front, sort_keys=False).rstrip(),
        "---",
        "",
        f"# {name} — `{revision}`",
        "",
        f"An intermediate checkpoint of a Llama-style language model pretrained from scratch with "
        f"slm-pretrain: the weights after **{step:,} optimizer steps** and "
        f"**{tokens_seen:,} training tokens** ({format_tokens(tokens_seen)}).",
        "Every released checkpoint of this run is a branch (revision) of this repository.",
        "",
        "| | |",
        "| --- | --- |",
        f"| revision | `{revision}` |",
        f"| steps | {step:,} |",
        f"| training tokens | {tokens_seen:,} |",
        f"| parameters | {params} |",
        "",
        "## How to load this revision",
        "",
        "```python",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        "",
        f'model = AutoModelForCausalLM.from_pretrained("{repo_id}", revision="{revision}")',
        f'tokenizer = AutoTokenizer.from_pretrained("{repo_id}", revision="{revision}")',
        "```",
        "",
        "## Architecture",
        "",
        "| field | value |",
        "| --- | --- |",
        arch_rows,
        "",
        "## Training loss",
        "",
    ]
    if has_loss_plot:
        lines += [f"Loss up to step {step:,} (from the run's `metrics.csv`):", "",
                  "![training loss](loss.png)", ""]
    else:
        lines += ["The run's `metrics.csv` was not found next to the checkpoint; no loss curve.", ""]
    if run_config:
        lines += ["## Training config", "", "The resolved configuration of the run:", "",
                  "```yaml", _yaml_block(run_config), "```", ""]
    return "\n".join(lines)

