"""The GPU suite's driver pieces that the rehearsal cannot show: a step killed at its time limit
takes the commands it runs (each in its own process group) down with it, so that a bench left
behind cannot hold the GPU through the steps after it."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_a_step_killed_at_its_limit_kills_the_command_it_runs(tmp_path):
    pid_file = tmp_path / "child.pid"
    code = ("import signal, sys\n"
            "from tests.gpu import suite\n"
            "signal.signal(signal.SIGTERM, suite._killed)\n"
            f"suite.run_logged(['bash', '-c', 'echo $$ > {pid_file}; exec sleep 120'], timeout_s=300)\n")
    step = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(ROOT)})
    deadline = time.monotonic() + 120
    while not (pid_file.exists() and pid_file.read_text().strip()):
        assert time.monotonic() < deadline and step.poll() is None
        time.sleep(0.1)
    child = int(pid_file.read_text())
    step.send_signal(signal.SIGTERM)
    assert step.wait(timeout=60) == 124
    for _ in range(100):  # the sleep, reparented, is reaped by init once killed
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return
        if Path(f"/proc/{child}/stat").read_text().split()[2] == "Z":
            return
        time.sleep(0.1)
    raise AssertionError(f"the step's command {child} outlived it")
