"""`slm sweep collect`: gather each run's final validation loss into ``DIR/results.csv``.

``results.csv`` has the DESIGN.md columns ``run,params,non_embedding_params,tokens,loss,flops,
tokens_per_param`` (``params`` = all parameters, ``loss`` = validation loss at the run's last
step, flops = 6·params·tokens, tokens_per_param = tokens/params) plus ``budget`` (isoFLOP
plans), ``model`` and ``holdout`` (1 for a held-out run: collected, never fitted). ``curves.csv`` holds every
validation point of every run (``run,params,batch,seq_len,step,tokens,val_loss``; batch in
tokens per step): the loss curves that Chinchilla's approach 1 takes the envelope of and that a
batch-size fit reads steps-to-target from. When runs logged the gradient noise scale
(``model.noise_scale: true``), ``noise.csv`` holds it over training
(``run,batch,step,tokens,loss,noise_scale_tokens,noise_scale_sequences``).
"""

from __future__ import annotations

from pathlib import Path

from pretrain.errors import PretrainError
from pretrain.scaling.plan import read_plan
from pretrain.scaling.results import write_csv_atomic
from pretrain.scaling.runner import final_validation

RESULTS_FILE = "results.csv"
CURVES_FILE = "curves.csv"
RESULT_COLUMNS = ("run", "params", "non_embedding_params", "tokens", "loss", "flops",
                  "tokens_per_param", "budget", "model", "holdout")
CURVE_COLUMNS = ("run", "params", "batch", "seq_len", "step", "tokens", "val_loss")
NOISE_FILE = "noise.csv"
NOISE_COLUMNS = ("run", "batch", "step", "tokens", "loss", "noise_scale_tokens",
                 "noise_scale_sequences")


def _seq_len(config_path: str) -> int | str:
    import yaml

    try:
        config = yaml.safe_load(Path(config_path).read_text(encoding="utf-8"))
        return int(config["data"]["seq_len"])
    except (OSError, KeyError, TypeError, ValueError, yaml.YAMLError):
        return ""  # a plan from before seq_len was recorded, or a config edited by hand


def noise_rows(run_dir: Path, run: str, batch: int) -> list[dict]:
    """The rows of RUN_DIR/metrics.csv that logged the noise scale (none if it was off)."""
    import csv

    metrics = run_dir / "metrics.csv"
    if not metrics.is_file():
        return []
    rows = []
    with metrics.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if (row.get("noise_scale_tokens") or "").strip():
                step = int(float(row["step"]))
                rows.append({"run": run, "batch": batch, "step": step, "tokens": step * batch,
                             "loss": row.get("loss", ""),
                             "noise_scale_tokens": row["noise_scale_tokens"],
                             "noise_scale_sequences": row.get("noise_scale_sequences", "")})
    return rows


def collect_sweep(sweep_dir, allow_missing: bool = False) -> tuple[Path, int]:
    """Write results.csv and curves.csv; PretrainError if a run has not finished (unless
    ``allow_missing``) or none has."""
    sweep_dir = Path(sweep_dir)
    results, curves, noise, missing = [], [], [], []
    for row in read_plan(sweep_dir):
        steps, batch = int(row["steps"]), int(row["batch"])
        params, tokens = int(row["params"]), int(row["tokens"])
        validation = final_validation(sweep_dir / "runs" / row["run"])
        final = [v for v in validation if v["step"] >= steps]
        if not final:
            missing.append(row["run"])
            continue
        seq_len = _seq_len(row.get("config") or "")
        for v in validation:
            curves.append({"run": row["run"], "params": params, "batch": batch,
                           "seq_len": seq_len, "step": v["step"], "tokens": v["step"] * batch,
                           "val_loss": v["val_loss"]})
        noise += noise_rows(sweep_dir / "runs" / row["run"], row["run"], batch)
        results.append({"run": row["run"], "params": params,
                        "non_embedding_params": int(row["non_embedding_params"]),
                        "tokens": tokens, "loss": final[-1]["val_loss"],
                        "flops": 6.0 * params * tokens, "tokens_per_param": tokens / params,
                        "budget": row.get("budget", ""), "model": row["model"],
                        "holdout": int(row.get("holdout") or 0)})
    if missing and not allow_missing:
        raise PretrainError(f"{len(missing)} run(s) not finished: {', '.join(missing)}; run "
                            f"`slm sweep run {sweep_dir}` or pass --allow-missing")
    if not results:
        raise PretrainError(f"no finished runs to collect ({sweep_dir})")
    write_csv_atomic(sweep_dir / CURVES_FILE, curves, CURVE_COLUMNS)
    if noise:
        write_csv_atomic(sweep_dir / NOISE_FILE, noise, NOISE_COLUMNS)
    path = write_csv_atomic(sweep_dir / RESULTS_FILE, results, RESULT_COLUMNS)
    return path, len(results)
