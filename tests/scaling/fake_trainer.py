"""A stand-in for `slm pretrain` in orchestration tests: reads the planned config, appends
validation rows to RUN_DIR/metrics.csv as a run would, in milliseconds (and, when the config
sets model.noise_scale, training rows with a made-up noise scale of 100·step tokens).

Usage: python fake_trainer.py CALLS_FILE --config FILE --ckpt_path last
Each call appends "<run> <ckpt_path> <first step>" to CALLS_FILE. A run whose name is in
$FAKE_TRAIN_CRASH crashes halfway the first time (exit 1), like a killed job, and resumes
from its last validated step afterwards.
"""

import csv
import os
import sys
from pathlib import Path

import yaml


def main(calls_file, *argv):
    args = dict(zip(argv[::2], argv[1::2]))
    config = yaml.safe_load(Path(args["--config"]).read_text())
    run_dir = Path(config["trainer"]["default_root_dir"])
    run_dir.mkdir(parents=True, exist_ok=True)
    max_steps = config["trainer"]["max_steps"]
    every = config["data"]["val_every_n_steps"]
    batch = config["data"]["global_batch_tokens"]
    metrics = run_dir / "metrics.csv"
    done = 0
    if metrics.exists():
        done = max(int(r["step"]) for r in csv.DictReader(metrics.open()))
    crash_marker = run_dir / "crashed-once"
    crash = run_dir.name in os.environ.get("FAKE_TRAIN_CRASH", "").split(",") and \
        not crash_marker.exists()
    with open(calls_file, "a") as calls:
        calls.write(f"{run_dir.name} {args.get('--ckpt_path')} {done + 1}\n")
    new = not metrics.exists()
    noise = bool(config["model"].get("noise_scale"))
    with metrics.open("a", newline="") as handle:
        writer = csv.writer(handle)
        if new:
            writer.writerow(["step", "tokens_seen", "loss", "val_loss", "noise_scale_tokens",
                             "noise_scale_sequences"])
        for step in range(done + every, max_steps + 1, every):
            if crash and step > max_steps // 2:
                crash_marker.touch()
                return 1
            # A loss that falls with model width and with tokens seen.
            val_loss = 2.0 + 50.0 / config["model"]["dim"] ** 0.5 + 30.0 / (step * batch) ** 0.3
            if noise:  # a training row with the noise scale, as model.noise_scale logs it
                seq_len = config["data"]["seq_len"]
                writer.writerow([step, step * batch, val_loss, "", 100.0 * step,
                                 100.0 * step / seq_len])
            writer.writerow([step, step * batch, "", val_loss, "", ""])
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
