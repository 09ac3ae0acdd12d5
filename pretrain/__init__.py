"""Pretraining: Lightning module and data module, the `slm` command line, parallelism,
checkpoints, benchmarks, scaling sweeps, SLURM and Hub releases."""
