"""Fixtures for SLURM tests: one real single-node cluster per test session (see cluster.py)."""

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.slurm.cluster import LocalSlurm, SlurmUnavailable


@pytest.fixture(scope="session")
def slurm_cluster():
    """A running single-node SLURM (munged, slurmctld, slurmd) whose config is in SLURM_CONF.

    Skips (with the reason) only when SLURM is not installed or its daemons cannot start.
    The cluster lives in a short temp path: munge's socket path must fit in sun_path (108 B).
    """
    short_tmp = "/tmp" if os.path.isdir("/tmp") else None
    root = Path(tempfile.mkdtemp(prefix="slm-slurm-", dir=short_tmp))
    cluster = LocalSlurm(root)
    try:
        cluster.start()
    except SlurmUnavailable as e:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"no SLURM cluster: {e}")
    previous = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(cluster.conf)
    try:
        yield cluster
    finally:
        if previous is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = previous
        cluster.run("scancel", "--user=root", timeout=30)
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
