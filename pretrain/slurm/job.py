"""What a SLURM submission asks for (`SlurmJob`), checked before anything is written.

A job trains one run (one config, one run directory) or, as a job array, several: array task
i trains `runs[i]`. Options can come from a template in `configs/slurm/*.yaml` (keys named like
the `slm slurm submit` flags, with `_` for `-`); flags on the command line win.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path

import yaml

from pretrain.errors import PretrainError

# sbatch --array: "0-7", "0,2,5", "0-15:4", each optionally followed by "%<max running>".
_ARRAY_SPEC = re.compile(r"^((\d+(-\d+(:\d+)?)?)(,\d+(-\d+(:\d+)?)?)*)?(%\d+)?$")
_TIME_SPEC = re.compile(r"^(\d+-)?\d+(:\d+){0,2}$|^\d+-\d+$")


@dataclass
class Run:
    """One training run: its pretrain config and its run directory (trainer.default_root_dir)."""

    config: Path
    run_dir: Path


@dataclass
class SlurmJob:
    """Resources and launch settings of one `sbatch` submission.

    ``gpus_per_node`` > 0: one task per GPU (ntasks_per_node is set to it). CPU jobs (0 GPUs,
    e.g. gloo tests) run ``ntasks_per_node`` tasks per node. ``array``: sbatch array spec over
    the indices of ``runs`` (default: all of them, when there is more than one run).
    """

    runs: list[Run]
    job_name: str = "slm-pretrain"
    nodes: int = 1
    gpus_per_node: int = 0
    ntasks_per_node: int = 1
    cpus_per_task: int | None = None
    mem: str | None = None
    partition: str | None = None
    time: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    array: str | None = None
    signal_seconds: int = 120
    hsdp: bool = True
    setup: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    pretrain_args: list[str] = field(default_factory=list)
    python: str = sys.executable
    workdir: Path = field(default_factory=Path.cwd)
    script_dir: Path | None = None

    @property
    def tasks_per_node(self) -> int:
        return self.gpus_per_node if self.gpus_per_node > 0 else self.ntasks_per_node

    @property
    def world_size(self) -> int:
        return self.nodes * self.tasks_per_node

    @property
    def is_array(self) -> bool:
        return len(self.runs) > 1 or self.array is not None

    @property
    def record_dir(self) -> Path:
        """Where the script, the batch log and the job record go (RUN_DIR/slurm for one run)."""
        return self.script_dir or self.runs[0].run_dir / "slurm"

    def array_spec(self) -> str | None:
        if not self.is_array:
            return None
        return self.array if self.array and not self.array.startswith("%") else \
            f"0-{len(self.runs) - 1}{self.array or ''}"

    def validate(self) -> None:
        """Raise PretrainError (one line, naming the flag) for impossible requests."""
        if not self.runs:
            raise PretrainError("no run to submit (--config)")
        for name in ("nodes", "ntasks_per_node"):
            if getattr(self, name) < 1:
                raise PretrainError(f"{name} must be >= 1, got {getattr(self, name)} "
                                    f"(--{name.replace('_', '-')})")
        if self.gpus_per_node < 0:
            raise PretrainError(f"gpus_per_node must be >= 0, got {self.gpus_per_node} "
                                "(--gpus-per-node)")
        if self.cpus_per_task is not None and self.cpus_per_task < 1:
            raise PretrainError(f"cpus_per_task must be >= 1, got {self.cpus_per_task} "
                                "(--cpus-per-task)")
        if self.time is not None and not _TIME_SPEC.match(self.time):
            raise PretrainError(f"time {self.time!r} is not a SLURM time (e.g. 2-00:00:00, 30:00) "
                                "(--time)")
        if self.signal_seconds < 10:
            raise PretrainError(f"signal_seconds must be >= 10, got {self.signal_seconds}")
        run_dirs = [r.run_dir.resolve() for r in self.runs]
        if len(set(run_dirs)) != len(run_dirs):
            raise PretrainError("two configs share one run directory "
                                "(trainer.default_root_dir must differ per array task)")
        if self.array is not None:
            self._validate_array()

    def _validate_array(self) -> None:
        if not self.array or not _ARRAY_SPEC.match(self.array):
            raise PretrainError(f"array spec {self.array!r} is not like 0-7, 0,2,5, 0-7%2 or %2 "
                                "(--array)")
        if self.array.startswith("%"):
            return
        indices = self.array.split("%")[0]
        highest = max(int(n) for n in re.findall(r"\d+", re.sub(r":\d+", "", indices)))
        if highest >= len(self.runs):
            raise PretrainError(f"array index {highest} has no config: {len(self.runs)} config(s) "
                                f"given, indices 0-{len(self.runs) - 1} (--array)")


def read_template(path: str | Path) -> dict:
    """Options from a `configs/slurm/*.yaml` template, keyed like SlurmJob fields."""
    path = Path(path)
    if not path.is_file():
        raise PretrainError(f"SLURM template not found ({path})")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        line = getattr(getattr(e, "problem_mark", None), "line", None)
        where = f"{path}:{line + 1}" if line is not None else str(path)
        raise PretrainError(f"SLURM template is not valid YAML ({where})") from None
    if not isinstance(values, dict):
        raise PretrainError(f"SLURM template must be a mapping of options ({path})")
    allowed = {f.name for f in fields(SlurmJob)} - {"runs", "pretrain_args", "python", "workdir",
                                                     "script_dir"}
    unknown = sorted(set(values) - allowed)
    if unknown:
        raise PretrainError(f"unknown key {unknown[0]!r} in SLURM template; known: "
                            f"{', '.join(sorted(allowed))} ({path})")
    if not isinstance(values.get("setup") or [], list):
        raise PretrainError(f"setup must be a list of shell lines ({path})")
    if not isinstance(values.get("env") or {}, dict):
        raise PretrainError(f"env must be a mapping NAME: value ({path})")
    values["env"] = {str(k): str(v) for k, v in (values.get("env") or {}).items()}
    values["setup"] = [str(line) for line in values.get("setup") or []]
    for key, value in list(values.items()):
        if key in _INT_KEYS and (not isinstance(value, int) or isinstance(value, bool)):
            raise PretrainError(f"{key} must be an integer, got {value!r} ({path})")
        if key == "hsdp" and not isinstance(value, bool):
            raise PretrainError(f"hsdp must be true or false, got {value!r} ({path})")
        if key == "time" and not isinstance(value, str):
            raise PretrainError(f"time must be a quoted string like \"2-00:00:00\", got {value!r} "
                                f"({path})")
        if key in _STR_KEYS and value is not None:
            values[key] = str(value)
    return values


_INT_KEYS = {"nodes", "gpus_per_node", "ntasks_per_node", "cpus_per_task", "signal_seconds"}
_STR_KEYS = {"job_name", "mem", "partition", "account", "qos", "constraint", "array"}


def run_from_config(config: str | Path, run_dir: str | Path | None = None) -> Run:
    """The Run for a pretrain config: its run dir is ``run_dir`` or trainer.default_root_dir.

    Raises PretrainError when the config is missing or does not parse as a YAML mapping, or
    when neither names a run directory.
    """
    config = Path(config)
    if not config.is_file():
        raise PretrainError(f"config not found ({config})")
    try:
        values = yaml.safe_load(config.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{config}:{mark.line + 1}" if mark is not None else str(config)
        raise PretrainError(f"config is not valid YAML ({where})") from None
    if not isinstance(values, dict):
        raise PretrainError(f"config must be a YAML mapping with model/data/trainer sections "
                            f"({config})")
    trainer = values.get("trainer") or {}
    if run_dir is None:
        run_dir = trainer.get("default_root_dir") if isinstance(trainer, dict) else None
    if run_dir is None:
        raise PretrainError(f"no run directory: set trainer.default_root_dir in the config or pass "
                            f"--run-dir ({config})")
    return Run(config=config.resolve(), run_dir=Path(run_dir).resolve())
