"""The contract for user mistakes (DESIGN.md): one `error:` line, exit 2, no traceback."""


def assert_user_error(proc, *fragments):
    """A user mistake: exit 2, exactly one stderr line starting `error:`, no traceback."""
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
