"""Pretraining on SLURM: sbatch scripts (`script`), submission and job records (`submit`),
checkpoint-and-requeue on SLURM's warning signal (`requeue`), and run status (`status`).

`SlurmJob` (in `job`) describes a submission; `submit(job)` writes the script into the run
directory, calls sbatch and records the job id in RUN_DIR/slurm/jobs.jsonl; `write_script(job)`
is the dry run. A job with several runs is a job array (sweeps): array task i trains
``runs[i]`` (its config into its own run directory); from the command line,
`slm slurm submit --config A.yaml B.yaml C.yaml [--array %2] [--run-dir WHERE_THE_SCRIPT_GOES]`.
"""

from pretrain.slurm.job import Run, SlurmJob, read_template, run_from_config
from pretrain.slurm.submit import read_submissions, submit, write_script

__all__ = ["Run", "SlurmJob", "read_template", "run_from_config", "read_submissions", "submit",
           "write_script"]
