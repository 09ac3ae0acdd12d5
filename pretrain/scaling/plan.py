"""`slm sweep plan`: turn a sweep recipe (configs/scaling/*.yaml) into runs.

A recipe names a ``base_config`` (a full `slm pretrain` config: data, schedule, trainer) and the
runs to derive from it. Kinds:

- ``chinchilla`` (approach 1): every model at every token horizon in ``tokens``;
- ``isoflop`` (approach 2): for each budget C in ``budgets`` (FLOPs), every model with
  D = C / (6·N);
- ``overtrain`` (Gadre et al.): every model at every multiplier M = D/N in ``multipliers``;
- ``batch`` (McCandlish et al. 2018): one model (``models`` holds exactly one) trained on the
  same ``tokens`` (one number) at every global batch size in ``batch_sizes`` (tokens per step).
  The peak learning rate follows ``lr_scaling`` from ``lr`` at ``reference_batch_tokens``
  (default: the first batch size): ``sqrt`` (default) lr = lr_ref·√(B/B_ref), the square-root
  rule for Adam (Malladi et al. 2022, "On the SDEs and scaling rules for adaptive gradient
  algorithms": in the SDE that approximates Adam, batch ×κ with learning rate ×√κ leaves the
  dynamics unchanged; they also rescale the betas and eps, which we keep; Goyal et al.'s linear
  rule is SGD's), ``linear`` lr ∝ B, or ``none`` (lr fixed). Each run names its batch:
  ``<model>-B<tokens>``.

``models`` lists presets by name (``llama-10m``), ladder depths (``{n_layers: 2}``, shaped by
``model.config.ladder_config``'s rule: dim = 64·L, head_dim 64, ffn = 8/3·dim rounded to 256) or
off-ladder shapes below the smallest preset (``{n_layers: 1, dim: 32, n_heads: 1, ffn_dim: 96}``:
any of dim, n_heads, ffn_dim replace the ladder's value; multi-head attention, n_heads defaults
to dim/64 or 1); the base config's ``model.vocab_size`` and ``max_seq_len`` (if set) apply to
all. N counts every parameter (``params: total``, the default, as Chinchilla, Epoch and Gadre
et al. do) or the non-embedding ones (``params: non_embedding``, Kaplan et al.'s N; both from
``model.flops``); D = steps × ``global_batch_tokens``, the planned compute is C = 6·N·D and
M = D/N. plan.csv carries both counts (``params``: all, ``non_embedding_params``). Steps are rounded to whole
optimizer steps; runs with fewer than ``min_steps`` are dropped (rounding would move C by more
than 1/(2·min_steps)). Each run's cosine schedule spans exactly its own horizon (Hoffmann et
al.: a schedule longer than the run overestimates its loss), with ``warmup_fraction`` of the
steps as warmup. Runs longer than
``max_tokens`` (optional; e.g. one epoch of the data, or what a CPU demo can afford) are dropped
too: an isoFLOP budget's smallest models are its longest runs.

``runs:`` adds single runs to the kind's grid, fitted with it (e.g. an over-trained series next to
an isoFLOP grid): ``{model: M, tokens: D}`` or ``{model: M, M: tokens per parameter}``, named
``<model>-D<tokens>`` or ``<model>-M<m>``, no isoFLOP budget (approach 2 leaves them out).
``holdout:`` lists runs that are planned, trained and collected with the sweep but left out of
every fit (``slm sweep fit`` predicts them and reports its error): ``{model: M, tokens: D}`` or
``{model: M, M: tokens per parameter}``, with ``lr`` unless the model is one of ``models`` (its
lr) or ``lr`` is one number. They are named ``holdout-<model>-D<tokens>`` or
``holdout-<model>-M<m>`` and come last; ``min_steps`` and ``max_tokens`` refuse one (an error,
not a silent drop; the same holds for ``runs:``). plan.csv marks held-out runs in its
``holdout`` column (1).

Output: ``DIR/plan.csv``, ``DIR/configs/<run>.yaml`` (one `slm pretrain` config per run, whose
``trainer.default_root_dir`` is ``DIR/runs/<run>``) and ``DIR/sweep.json`` (the recipe and its
fingerprint: re-planning into DIR from another recipe is refused).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
from pathlib import Path

import yaml

from pretrain.errors import PretrainError
from pretrain.scaling.results import write_csv_atomic
from tokenizer.atomic import write_atomic

log = logging.getLogger(__name__)

KINDS = ("chinchilla", "isoflop", "overtrain", "batch")
AXES = {"chinchilla": "tokens", "isoflop": "budgets", "overtrain": "multipliers",
        "batch": "batch_sizes"}
LR_SCALING = {"sqrt": 0.5, "linear": 1.0, "none": 0.0}  # lr ∝ (B / B_ref)^exponent
SHAPE_KEYS = ("n_layers", "dim", "n_heads", "ffn_dim")
PLAN_COLUMNS = ("run", "model", "params", "non_embedding_params", "tokens", "flops", "M", "lr",
                "batch", "steps", "budget", "training_flops", "holdout", "config")
RECIPE_KEYS = {"kind", "base_config", "models", "budgets", "tokens", "multipliers", "lr",
               "global_batch_tokens", "micro_batch_size", "warmup_fraction", "min_lr_ratio", "min_steps",
               "val_points", "description", "batch_sizes", "lr_scaling", "reference_batch_tokens",
               "max_tokens", "params", "holdout", "runs"}
PARAM_COUNTS = ("total", "non_embedding")
HOLDOUT_KEYS = {"model", "tokens", "M", "lr"}
SWEEP_FILE = "sweep.json"
PLAN_FILE = "plan.csv"


def _load_yaml(path: Path, what: str) -> dict:
    if not path.is_file():
        raise PretrainError(f"{what} not found ({path})")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise PretrainError(f"{what} is not valid YAML ({where})") from None
    if not isinstance(data, dict):
        raise PretrainError(f"{what} must be a YAML mapping ({path})")
    return data


def _positive_list(recipe: dict, key: str, path: Path) -> list[float]:
    """A list of positive numbers; strings like ``1e12`` count (YAML 1.1 reads them as text)."""
    values = recipe.get(key)
    try:
        numbers = [float(v) for v in values if not isinstance(v, bool)]
    except (TypeError, ValueError):
        numbers = []
    if not isinstance(values, list) or not values or len(numbers) != len(values) or \
            not all(v > 0 and math.isfinite(v) for v in numbers):
        raise PretrainError(f"{key} must be a non-empty list of positive numbers ({path}: {key})")
    return numbers


def load_recipe(path) -> dict:
    """Read and check a sweep recipe; returns it with defaults filled in."""
    path = Path(path)
    recipe = _load_yaml(path, "sweep config")
    unknown = sorted(set(recipe) - RECIPE_KEYS)
    if unknown:
        raise PretrainError(f"unknown key {unknown[0]!r} in sweep config (known: "
                            f"{', '.join(sorted(RECIPE_KEYS))}) ({path})")
    kind = recipe.get("kind")
    if kind not in KINDS:
        raise PretrainError(f"kind must be one of {', '.join(KINDS)}, got {kind!r} ({path}: kind)")
    axis = AXES[kind]
    recipe[axis] = _positive_list(recipe, axis, path)
    if not isinstance(recipe.get("models"), list) or not recipe["models"]:
        raise PretrainError(f"models must be a non-empty list of presets or {{n_layers: L}} "
                            f"({path}: models)")
    if kind == "batch":
        _check_batch_recipe(recipe, path)
    if "base_config" not in recipe:
        raise PretrainError(f"base_config is required: the `slm pretrain` config each run starts "
                            f"from ({path}: base_config)")
    defaults = {"warmup_fraction": 0.05, "min_lr_ratio": 0.1, "min_steps": 100, "val_points": 4,
                "params": "total", "holdout": [], "runs": []}
    recipe = {**defaults, **recipe}
    max_tokens = recipe.get("max_tokens")
    if max_tokens is not None and (isinstance(max_tokens, bool) or
                                   not isinstance(max_tokens, (int, float)) or max_tokens <= 0):
        raise PretrainError(f"max_tokens must be a positive number, got {max_tokens!r} "
                            f"({path}: max_tokens)")
    if recipe["params"] not in PARAM_COUNTS:
        raise PretrainError(f"params must be one of {', '.join(PARAM_COUNTS)} (how N counts in "
                            f"C = 6ND and M = D/N), got {recipe['params']!r} ({path}: params)")
    _check_entries(recipe, "runs", path)
    _check_entries(recipe, "holdout", path)
    # Whole steps move D (and C) by at most 1/(2·steps): 50 steps keep C within 1% of plan.
    if not isinstance(recipe["min_steps"], int) or recipe["min_steps"] < 50:
        raise PretrainError(f"min_steps must be an integer ≥ 50, got {recipe['min_steps']!r} "
                            f"({path}: min_steps)")
    return recipe


def _check_entries(recipe: dict, key: str, path: Path) -> None:
    """``runs:`` and ``holdout:`` entries are ``{model: M, tokens: D}`` or ``{model: M, M: m}``
    (+ ``lr``)."""
    holdouts = recipe[key]
    if not isinstance(holdouts, list):
        raise PretrainError(f"{key} must be a list of {{model, tokens}} or {{model, M}} "
                            f"entries ({path}: {key})")
    if holdouts and recipe["kind"] == "batch":
        raise PretrainError(f"a batch sweep fits no scaling law: {key} is for the other kinds "
                            f"({path}: {key})")
    for i, entry in enumerate(holdouts):
        where = f"{path}: {key}[{i}]"
        if not isinstance(entry, dict) or "model" not in entry or set(entry) - HOLDOUT_KEYS or \
                ("tokens" in entry) == ("M" in entry):
            raise PretrainError(f"a {key} entry is {{model: ..., tokens: D}} or {{model: ..., "
                                f"M: tokens per parameter}} (optional lr), got {entry!r} ({where})")
        for key in ("tokens", "M", "lr"):
            if key in entry:
                try:
                    value = float(entry[key])
                except (TypeError, ValueError):
                    value = math.nan
                if isinstance(entry[key], bool) or not (math.isfinite(value) and value > 0):
                    raise PretrainError(f"{key} must be a positive number, got {entry[key]!r} "
                                        f"({where}: {key})")
                entry[key] = value


def _check_batch_recipe(recipe: dict, path: Path) -> None:
    if len(recipe["models"]) != 1:
        raise PretrainError(f"a batch sweep trains one model at several batch sizes; models "
                            f"lists {len(recipe['models'])} ({path}: models)")
    tokens = recipe.get("tokens")
    if isinstance(tokens, list) and len(tokens) == 1:
        tokens = tokens[0]
    try:
        tokens = float(tokens)
    except (TypeError, ValueError):
        tokens = math.nan
    if not (math.isfinite(tokens) and tokens > 0):
        raise PretrainError(f"tokens must be one positive number, the token budget every batch "
                            f"size trains on, got {recipe.get('tokens')!r} ({path}: tokens)")
    recipe["tokens"] = tokens
    if isinstance(recipe.get("lr"), list):
        raise PretrainError(f"lr of a batch sweep is one number, the peak learning rate at "
                            f"reference_batch_tokens ({path}: lr)")
    scaling = recipe.setdefault("lr_scaling", "sqrt")
    if scaling not in LR_SCALING:
        raise PretrainError(f"lr_scaling must be one of {', '.join(LR_SCALING)}, got "
                            f"{scaling!r} ({path}: lr_scaling)")
    reference = recipe.setdefault("reference_batch_tokens", recipe["batch_sizes"][0])
    if isinstance(reference, bool) or not isinstance(reference, (int, float)) or reference <= 0:
        raise PretrainError(f"reference_batch_tokens must be a positive number, got "
                            f"{reference!r} ({path}: reference_batch_tokens)")


def model_config(entry, base_model: dict, where: str):
    """(label, LlamaConfig) for a preset name, a ``{n_layers: L}`` ladder entry or an
    off-ladder shape ``{n_layers: L, dim: d, n_heads: h, ffn_dim: f}`` (label ``L1d32h1f96``)."""
    from model import LlamaConfig, ModelError
    from model.config import ladder_config

    shared = {k: base_model[k] for k in ("vocab_size", "max_seq_len") if base_model.get(k)}
    try:
        if isinstance(entry, str):
            return entry, LlamaConfig.from_name(entry, **shared)
        if isinstance(entry, dict) and "n_layers" in entry and set(entry) <= set(SHAPE_KEYS):
            shape = {k: entry[k] for k in SHAPE_KEYS[1:] if k in entry}
            if isinstance(shape.get("dim"), int) and "n_heads" not in shape:
                shape["n_heads"] = max(1, shape["dim"] // 64)  # the ladder's head_dim
            if "n_heads" in shape:
                shape["n_kv_heads"] = shape["n_heads"]
            label = f"L{entry['n_layers']}" + "".join(
                f"{tag}{entry[key]}" for key, tag in (("dim", "d"), ("n_heads", "h"),
                                                      ("ffn_dim", "f")) if key in entry)
            return label, ladder_config(entry["n_layers"], **shape, **shared)
    except ModelError as e:
        raise PretrainError(f"{e} ({where})") from None
    raise PretrainError(f"a model is a preset name, {{n_layers: L}} or {{n_layers: L, dim: d, "
                        f"n_heads: h, ffn_dim: f}}, got {entry!r} ({where})")


def _validation_interval(steps: int, points: int) -> int:
    """A divisor of ``steps`` near steps/points, so the last step is always validated."""
    divisors = [d for d in range(1, steps + 1) if steps % d == 0]
    return min(divisors, key=lambda d: (abs(steps / d - points), -d))


def _fingerprint(recipe_text: str, base_text: str) -> str:
    return hashlib.sha256((recipe_text + "\0" + base_text).encode()).hexdigest()


def _name(value: float) -> str:
    """Run-name form of a number: 2700 → "2700", 0.5 → "0.5", 1.64e12 → "1.64e12"."""
    if value == int(value) and value < 1e7:
        return str(int(value))
    mantissa, _, exponent = f"{value:.3g}".partition("e")
    return f"{mantissa}e{int(exponent)}" if exponent else mantissa


def _counted(config, count: str) -> int:
    """N as the sweep counts it: all parameters (``total``) or the non-embedding ones."""
    from model.flops import non_embedding_param_count, param_count

    return param_count(config) if count == "total" else non_embedding_param_count(config)


def _row(run: str, label: str, config, lr: float, tokens: int, batch: int, seq_len: int,
         count: str, budget=None, holdout: bool = False) -> dict:
    from model.flops import flops_per_token, non_embedding_param_count, param_count

    counted = _counted(config, count)
    return {"run": run, "model": label, "params": param_count(config),
            "non_embedding_params": non_embedding_param_count(config), "tokens": tokens,
            "flops": 6.0 * counted * tokens, "M": tokens / counted, "lr": lr, "batch": batch,
            "steps": tokens // batch, "budget": budget if budget is not None else "",
            "training_flops": flops_per_token(config, seq_len) * tokens,
            "holdout": int(holdout), "_config": config}


def plan_runs(recipe: dict, recipe_path: Path, base: dict) -> list[dict]:
    """The rows of plan.csv (without ``config``), in the order they will run: the fitted runs,
    then the held-out ones."""
    base_model = base.get("model") or {}
    base_data = base.get("data") or {}
    batch = int(recipe.get("global_batch_tokens") or base_data.get("global_batch_tokens") or 0)
    if batch <= 0:
        raise PretrainError(f"global_batch_tokens must be set in the sweep or base config "
                            f"({recipe_path}: global_batch_tokens)")
    seq_len = int(base_data.get("seq_len", 2048))
    lrs = recipe.get("lr", base_model.get("lr", 4e-4))
    models = [model_config(entry, base_model, f"{recipe_path}: models[{i}]")
              for i, entry in enumerate(recipe["models"])]
    if isinstance(lrs, list) and len(lrs) != len(models):
        raise PretrainError(f"lr must be one number or one per model ({len(models)}) "
                            f"({recipe_path}: lr)")
    count = recipe.get("params", "total")
    rows = []
    for index, (label, config) in enumerate(models):
        lr = float(lrs[index] if isinstance(lrs, list) else lrs)
        kind = recipe["kind"]
        if kind == "batch":
            _plan_batch_runs(recipe, recipe_path, base, label, config, lr, rows)
            continue
        params = _counted(config, count)
        if kind == "isoflop":
            targets = [(f"C{_name(c)}-{label}", c / (6.0 * params), c) for c in recipe["budgets"]]
        elif kind == "chinchilla":
            targets = [(f"{label}-D{_name(d)}", d, None) for d in recipe["tokens"]]
        else:
            targets = [(f"{label}-M{_name(m)}", m * params, None) for m in recipe["multipliers"]]
        for run, tokens_wanted, budget in targets:
            steps = round(tokens_wanted / batch)
            if steps < recipe["min_steps"]:
                log.info("skipping %s: %d steps < min_steps %d", run, steps, recipe["min_steps"])
                continue
            tokens = steps * batch
            if recipe.get("max_tokens") and tokens > recipe["max_tokens"]:
                log.info("skipping %s: %d tokens > max_tokens %d", run, tokens,
                         recipe["max_tokens"])
                continue
            rows.append(_row(run, label, config, lr, tokens, batch, seq_len, count, budget))
    if not rows:
        raise PretrainError(f"the sweep plans no run: every run is shorter than min_steps="
                            f"{recipe['min_steps']} ({recipe_path})")
    for key in ("runs", "holdout"):
        for i, entry in enumerate(recipe.get(key) or []):
            rows.append(_entry_row(entry, key, f"{recipe_path}: {key}[{i}]", recipe, base, lrs,
                                   batch, seq_len, count, rows))
    return rows


def _entry_row(entry, key, where, recipe, base, lrs, batch, seq_len, count, rows) -> dict:
    """The plan row of one ``runs:`` or ``holdout:`` entry; refused (never dropped quietly)
    when it breaks min_steps or max_tokens or repeats a run name."""
    holdout = key == "holdout"
    label, config = model_config(entry["model"], base.get("model") or {}, f"{where}: model")
    lr = _holdout_lr(entry, recipe, lrs, where)
    prefix = "holdout-" if holdout else ""
    if "tokens" in entry:
        run, tokens_wanted = f"{prefix}{label}-D{_name(entry['tokens'])}", entry["tokens"]
    else:
        run = f"{prefix}{label}-M{_name(entry['M'])}"
        tokens_wanted = entry["M"] * _counted(config, count)
    steps = round(tokens_wanted / batch)
    tokens = steps * batch
    what = "held-out run" if holdout else "run"
    if steps < recipe["min_steps"]:
        raise PretrainError(f"{what} {run} would train {steps} steps, fewer than "
                            f"min_steps={recipe['min_steps']} ({where})")
    if recipe.get("max_tokens") and tokens > recipe["max_tokens"]:
        raise PretrainError(f"{what} {run} would train {tokens:,} tokens, more than "
                            f"max_tokens={recipe['max_tokens']:,} ({where})")
    if any(r["run"] == run for r in rows):
        raise PretrainError(f"{what} {run} is planned twice ({where})")
    return _row(run, label, config, lr, tokens, batch, seq_len, count, holdout=holdout)


def _holdout_lr(entry: dict, recipe: dict, lrs, where: str) -> float:
    """The entry's ``lr``, else that of the same model in ``models``, else the sweep's one lr."""
    if "lr" in entry:
        return float(entry["lr"])
    if not isinstance(lrs, list):
        return float(lrs)
    for model, lr in zip(recipe["models"], lrs):
        if model == entry["model"]:
            return float(lr)
    raise PretrainError(f"a model that is not in models needs its own lr "
                        f"(lr is one per model) ({where}: lr)")


def _plan_batch_runs(recipe, recipe_path, base, label, config, lr, rows) -> None:
    """One row per batch size: the same model and token budget, lr scaled by lr_scaling."""
    base_data = base.get("data") or {}
    seq_len = int(base_data.get("seq_len", 2048))
    micro = int(recipe.get("micro_batch_size") or base_data.get("micro_batch_size", 8))
    noise_scale = bool((base.get("model") or {}).get("noise_scale"))
    exponent = LR_SCALING[recipe["lr_scaling"]]
    for batch_value in recipe["batch_sizes"]:
        batch = int(batch_value)
        where = f"{recipe_path}: batch_sizes"
        if batch != batch_value or batch % (seq_len * micro):
            raise PretrainError(f"batch size {batch_value:g} is not a whole number of "
                                f"micro-batches of {micro} × {seq_len} tokens ({where})")
        if noise_scale and batch // (seq_len * micro) < 2:
            raise PretrainError(f"model.noise_scale needs at least 2 micro-batches per step; "
                                f"batch size {batch} is one micro-batch of {micro} × {seq_len} "
                                f"tokens: lower micro_batch_size ({where})")
        steps = round(recipe["tokens"] / batch)
        run = f"{label}-B{batch}"
        if steps < recipe["min_steps"]:
            log.info("skipping %s: %d steps < min_steps %d", run, steps, recipe["min_steps"])
            continue
        rows.append(_row(run, label, config,
                         lr * (batch / float(recipe["reference_batch_tokens"])) ** exponent,
                         steps * batch, batch, seq_len, recipe.get("params", "total")))


def run_config(base: dict, row: dict, recipe: dict, run_dir: Path) -> dict:
    """The full `slm pretrain` config of one planned run."""
    config = copy.deepcopy(base)
    shape = row["_config"]
    model = config.setdefault("model", {})
    model.update(preset="llama-1m", vocab_size=shape.vocab_size, dim=shape.dim,
                 n_layers=shape.n_layers, n_heads=shape.n_heads, n_kv_heads=shape.n_kv_heads,
                 ffn_dim=shape.ffn_dim, max_seq_len=shape.max_seq_len,
                 tie_embeddings=shape.tie_embeddings, lr=row["lr"],
                 min_lr=row["lr"] * recipe["min_lr_ratio"],
                 warmup_steps=max(1, round(recipe["warmup_fraction"] * row["steps"])),
                 schedule="cosine")
    if row["model"] in _preset_names():
        model["preset"] = row["model"]
    data = config.setdefault("data", {})
    data["global_batch_tokens"] = row["batch"]
    if recipe.get("micro_batch_size"):
        data["micro_batch_size"] = recipe["micro_batch_size"]
    data["val_every_n_steps"] = _validation_interval(row["steps"], recipe["val_points"])
    trainer = config.setdefault("trainer", {})
    trainer["default_root_dir"] = str(run_dir)
    trainer["max_steps"] = row["steps"]
    checkpoint = config.setdefault("checkpoint", {})
    checkpoint["every_n_steps"] = data["val_every_n_steps"]
    checkpoint.pop("milestone_every_tokens", None)
    for key in ("sample_prompt", "sample_tokens"):
        config.pop(key, None)  # no generated sample after every sweep run
    return config


def _preset_names():
    from model.config import PRESETS

    return set(PRESETS)


def plan_sweep(recipe_path, output) -> Path:
    """Write plan.csv, one config per run and sweep.json into ``output``; returns plan.csv."""
    recipe_path, output = Path(recipe_path), Path(output).resolve()
    recipe = load_recipe(recipe_path)
    base_path = Path(recipe["base_config"])
    base = _load_yaml(base_path, "base_config")
    fingerprint = _fingerprint(recipe_path.read_text(encoding="utf-8"),
                               base_path.read_text(encoding="utf-8"))
    existing = output / SWEEP_FILE
    if existing.is_file():
        previous = json.loads(existing.read_text(encoding="utf-8"))
        if previous.get("fingerprint") != fingerprint:
            raise PretrainError(f"{output} holds a plan from another sweep config "
                                f"({previous.get('recipe')}); use a new --output")
    elif output.exists() and any(output.iterdir()):
        raise PretrainError(f"output directory is not empty and holds no sweep plan ({output})")
    rows = plan_runs(recipe, recipe_path, base)
    for row in rows:
        config_path = output / "configs" / f"{row['run']}.yaml"
        config = run_config(base, row, recipe, output / "runs" / row["run"])
        role = "held out: trained, never fitted" if row["holdout"] else recipe["kind"]
        header = (f"# Planned by `slm sweep plan --config {recipe_path}` ({role}).\n"
                  f"# {row['run']}: N={row['params']:,} params ({row['non_embedding_params']:,} "
                  f"non-embedding), D={row['tokens']:,} tokens, C=6ND={row['flops']:.4g} FLOPs "
                  f"and M={row['M']:.3g} tokens/param with N counted as {recipe['params']}.\n")
        write_atomic(config_path, header + yaml.safe_dump(config, sort_keys=False))
        row["config"] = str(config_path)
    write_atomic(existing, json.dumps(
        {"recipe": str(recipe_path), "base_config": str(base_path), "kind": recipe["kind"],
         "fingerprint": fingerprint, "params_count": recipe["params"],
         "runs": [r["run"] for r in rows],
         "holdout": [r["run"] for r in rows if r["holdout"]]}, indent=2) + "\n")
    plan_csv = write_csv_atomic(output / PLAN_FILE, rows, PLAN_COLUMNS)
    log.info("planned %d %s runs (%d held out), total C = %.3g FLOPs (6ND, N counted as %s)",
             len(rows), recipe["kind"], sum(r["holdout"] for r in rows),
             sum(r["flops"] for r in rows), recipe["params"])
    return plan_csv


def read_plan(sweep_dir) -> list[dict]:
    """The rows of DIR/plan.csv; PretrainError if DIR is not a planned sweep."""
    import csv

    sweep_dir = Path(sweep_dir)
    plan_csv = sweep_dir / PLAN_FILE
    if not plan_csv.is_file() or not (sweep_dir / SWEEP_FILE).is_file():
        raise PretrainError(f"not a sweep directory (no {PLAN_FILE}/{SWEEP_FILE}; make one with "
                            f"`slm sweep plan`) ({sweep_dir})")
    with plan_csv.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))
