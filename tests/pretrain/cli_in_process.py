"""Run `slm ...` inside the test process (no interpreter start-up: seconds cheaper per call)
and return what a subprocess run would: return code, stdout, stderr."""

from __future__ import annotations

import subprocess


def slm_in_process(capsys, *args) -> subprocess.CompletedProcess:
    from pretrain.cli import main

    capsys.readouterr()
    returncode = main([str(a) for a in args])
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(list(args), returncode, captured.out, captured.err)
