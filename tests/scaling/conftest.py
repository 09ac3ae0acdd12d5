"""Fixtures for the scaling tests: small sweep recipes over a small base pretraining config."""

from pathlib import Path

import pytest
import yaml

BASE_CONFIG = {
    "seed_everything": 3,
    "trainer": {"default_root_dir": "runs/base", "accelerator": "cpu", "devices": 1,
                "max_steps": 10, "log_every_n_steps": 5, "enable_progress_bar": False},
    "model": {"preset": "debug-100k", "vocab_size": 1024, "lr": 3e-3, "min_lr": 3e-4,
              "warmup_steps": 1},
    "data": {"path": "data/none", "seq_len": 32, "global_batch_tokens": 256,
             "micro_batch_size": 8, "num_workers": 0, "val_every_n_steps": 5,
             "val_sequences": 8},
    "checkpoint": {"every_n_steps": 5, "keep_last": 1},
}


@pytest.fixture
def sweep_recipe():
    """write(path, base=None, **keys) → a sweep recipe over ladder depths 1 and 2 whose base
    config (written next to it) is BASE_CONFIG updated by ``base`` sections."""

    def write(path: Path, base: dict | None = None, **keys) -> Path:
        path = Path(path)
        config = {section: dict(values) if isinstance(values, dict) else values
                  for section, values in BASE_CONFIG.items()}
        for section, values in (base or {}).items():
            config.setdefault(section, {}).update(values)
        base_path = path.with_name(path.stem + "-base.yaml")
        base_path.write_text(yaml.safe_dump(config))
        recipe = {"base_config": str(base_path), "models": [{"n_layers": 1}, {"n_layers": 2}],
                  "min_steps": 50, **keys}
        path.write_text(yaml.safe_dump(recipe))
        return path

    return write


@pytest.fixture(scope="session")
def holdout_fit(tmp_path_factory):
    """(fit dir, fit.json, stdout) of `slm sweep fit` on ``synthetic_sweep()`` (15 fitted runs,
    2 held out; approach 3, over-training and Kaplan, 10 bootstrap resamples)."""
    import json
    import subprocess
    import sys

    from tests.scaling.synthetic import synthetic_sweep, write_results

    root = tmp_path_factory.mktemp("holdout-fit")
    results = write_results(root / "results.csv", synthetic_sweep())
    out = root / "fit"
    proc = subprocess.run([sys.executable, "-m", "pretrain.cli", "sweep", "fit", "--results",
                           str(results), "--output", str(out), "--bootstrap", "10",
                           "--fits", "3,overtrain,kaplan"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return out, json.loads((out / "fit.json").read_text()), proc.stdout
