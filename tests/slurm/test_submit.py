"""`slm slurm submit` against the real test cluster: what sbatch refuses never half-happens."""

import pytest

from tests.slurm.test_script import write_config
from tests.user_errors import assert_user_error

pytestmark = pytest.mark.slurm


def queued_jobs(cluster) -> list[str]:
    return cluster.run("squeue", "-h", "-o", "%i").stdout.split()


def test_unknown_partition_is_sbatchs_own_error_in_one_line(slurm_cluster, slm, tmp_path):
    before = queued_jobs(slurm_cluster)
    config = write_config(tmp_path / "run.yaml", tmp_path / "run")
    proc = slm("slurm", "submit", "--config", config, "--partition", "nosuch")
    assert_user_error(proc, "sbatch refused the job", "Invalid partition name specified")
    assert not (tmp_path / "run").exists()
    assert queued_jobs(slurm_cluster) == before


def test_gpus_on_a_partition_without_gpus(slurm_cluster, slm, tmp_path):
    config = write_config(tmp_path / "run.yaml", tmp_path / "run")
    proc = slm("slurm", "submit", "--config", config, "--gpus-per-node", "8")
    assert_user_error(proc, "--gpus-per-node 8", "has no GPUs", "--partition")
    assert not (tmp_path / "run").exists()
