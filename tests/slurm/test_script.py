"""`slm slurm submit --dry-run`: the sbatch script it writes, and user mistakes caught before
SLURM is asked anything. These need no cluster (default suite). Scripts are rendered in
process (`pretrain.cli.main`, fast); the user-error contract is checked on real subprocesses."""

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.user_errors import assert_user_error

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def slm_here(capsys):
    """`slm ARGS` in this process (fast); returns a CompletedProcess like the `slm` fixture."""
    from pretrain.cli import main

    def run(*args):
        rc = main([str(a) for a in args])
        out = capsys.readouterr()
        return subprocess.CompletedProcess(list(args), rc, out.out, out.err)

    return run


@pytest.fixture
def dry_run(slm_here):
    """`slm slurm submit ARGS --dry-run` in this process; returns stdout (asserts exit 0)."""

    def run(*args):
        split = args.index("--") if "--" in args else len(args)
        proc = slm_here("slurm", "submit", *args[:split], "--dry-run", *args[split:])
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    return run


def write_config(path: Path, run_dir: Path | None) -> Path:
    trainer = {"max_steps": 4, "accelerator": "cpu"}
    if run_dir is not None:
        trainer["default_root_dir"] = str(run_dir)
    path.write_text(yaml.safe_dump({"model": {"preset": "llama-1m"}, "trainer": trainer}))
    return path


def only_script(run_dir: Path) -> Path:
    scripts = sorted((run_dir / "slurm").glob("*.sbatch"))
    assert len(scripts) == 1, scripts
    return scripts[0]


def directives(script: str) -> list[str]:
    return [line.split(None, 1)[1] for line in script.splitlines() if line.startswith("#SBATCH")]


def test_dry_run_writes_script_into_run_dir_and_prints_it(slm, tmp_path):
    config = write_config(tmp_path / "run.yaml", tmp_path / "run")
    proc = slm("slurm", "submit", "--config", config, "--gpus-per-node", "8", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    script = only_script(tmp_path / "run").read_text()
    assert script in proc.stdout
    assert "not submitted" in proc.stdout
    assert proc.stderr == ""
    assert not (tmp_path / "run" / "slurm" / "jobs.jsonl").exists()


def test_script_runs_one_task_per_gpu_requeues_and_resumes(dry_run, tmp_path):
    config = write_config(tmp_path / "run.yaml", tmp_path / "run")
    dry_run("--config", config, "--gpus-per-node", "8", "--time", "2-00:00:00",
            "--partition", "gpu", "--account", "lab", "--qos", "high")
    script = only_script(tmp_path / "run").read_text()
    d = directives(script)
    for expected in ("--nodes=1", "--ntasks-per-node=8", "--gpus-per-node=8", "--requeue",
                     "--signal=USR1@120", "--time=2-00:00:00", "--partition=gpu",
                     "--account=lab", "--qos=high", "--open-mode=append"):
        assert expected in d, (expected, d)
    assert f"--output={tmp_path / 'run' / 'slurm'}/%x-%j.out" in d
    assert 'srun --kill-on-bad-exit=1 "$PYTHON" -m pretrain.cli pretrain' in script
    assert "--trainer.devices 8" in script and "--trainer.num_nodes 1" in script
    assert "--trainer.callbacks+=pretrain.slurm.requeue.RequeueOnSignal" in script
    assert "--ckpt_path last" in script
    assert "FSDP2Strategy" not in script  # one node: the config's own strategy
    assert "TORCH_NCCL_ASYNC_ERROR_HANDLING=1" in script


def test_script_is_valid_bash(dry_run, tmp_path):
    config = write_config(tmp_path / "run.yaml", tmp_path / "run")
    dry_run("--config", config, "--", "--trainer.max_steps", "9")
    subprocess.run(["bash", "-n", str(only_script(tmp_path / "run"))], check=True)


def test_multi_node_uses_hsdp(dry_run, tmp_path):
    config = write_config(tmp_path / "run.yaml", tmp_path / "run")
    dry_run("--config", config, "--nodes", "4", "--gpus-per-node", "8")
    script = only_script(tmp_path / "run").read_text()
    assert "--nodes=4" in directives(script)
    assert "--trainer.num_nodes 4" in script
    assert "--trainer.strategy pretrain.training.parallelize.FSDP2Strategy" in script
    assert "--trainer.strategy.hsdp true" in script


def test_extra_pretrain_args_come_last_so_they_win(dry_run, tmp_path):
    config = write_config(tmp_path / "run.yaml", tmp_path / "run")
    dry_run("--config", config, "--", "--trainer.max_steps", "9", "--model.lr", "1e-3")
    script = only_script(tmp_path / "run").read_text()
    launch = script[script.index("srun "):].splitlines()
    command = launch[:next(i for i, line in enumerate(launch) if "|| status=$?" in line) + 1]
    assert "\n".join(command).endswith("--trainer.max_steps 9 \\\n    --model.lr 1e-3 || status=$?")


def test_run_dir_flag_overrides_config(dry_run, tmp_path):
    config = write_config(tmp_path / "run.yaml", tmp_path / "from-config")
    dry_run("--config", config, "--run-dir", tmp_path / "elsewhere")
    script = only_script(tmp_path / "elsewhere").read_text()
    assert f"RUN_DIR={tmp_path / 'elsewhere'}" in script
    assert not (tmp_path / "from-config").exists()


def test_template_gives_defaults_and_flags_override_it(dry_run, tmp_path):
    config = write_config(tmp_path / "run.yaml", tmp_path / "run")
    template = REPO / "configs" / "slurm" / "multi-node-1.1b.yaml"
    dry_run("--template", template, "--config", config, "--nodes", "2")
    script = only_script(tmp_path / "run").read_text()
    d = directives(script)
    assert "--nodes=2" in d and "--gpus-per-node=8" in d and "--signal=USR1@300" in d
    assert "export NCCL_IB_HCA=mlx5" in script


@pytest.mark.parametrize("template", sorted((REPO / "configs" / "slurm").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_every_template_renders(dry_run, tmp_path, template):
    config = write_config(tmp_path / "run.yaml", tmp_path / "run")
    assert "#SBATCH" in dry_run("--template", template, "--config", config)


def test_several_configs_make_an_array_over_their_run_dirs(dry_run, tmp_path):
    configs = [write_config(tmp_path / f"r{i}.yaml", tmp_path / "sweep" / f"r{i}")
               for i in range(3)]
    dry_run("--config", *configs, "--array", "%2")
    script = only_script(tmp_path / "sweep").read_text()  # the runs' common parent
    d = directives(script)
    assert "--array=0-2%2" in d
    assert f"--output={tmp_path / 'sweep' / 'slurm'}/%x-%A_%a.out" in d
    assert 'CONFIG="${CONFIGS[$SLURM_ARRAY_TASK_ID]}"' in script
    for i in range(3):
        assert f"  {tmp_path / 'sweep' / f'r{i}'}\n" in script


# --- user mistakes: one `error:` line, exit 2, nothing written ------------------------------

def test_config_that_does_not_parse(slm, tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("trainer:\n  default_root_dir: [unclosed\n")
    assert_user_error(slm("slurm", "submit", "--config", config, "--dry-run"),
                      "not valid YAML", "bad.yaml")


def test_missing_config(slm_here, tmp_path):
    assert_user_error(slm_here("slurm", "submit", "--config", tmp_path / "nope.yaml", "--dry-run"),
                      "config not found", "nope.yaml")


def test_config_without_run_dir(slm_here, tmp_path):
    config = write_config(tmp_path / "run.yaml", None)
    assert_user_error(slm_here("slurm", "submit", "--config", config, "--dry-run"),
                      "trainer.default_root_dir", "--run-dir")


def test_array_index_without_config(slm_here, tmp_path):
    configs = [write_config(tmp_path / f"r{i}.yaml", tmp_path / f"r{i}") for i in range(2)]
    proc = slm_here("slurm", "submit", "--config", *configs, "--array", "0-2", "--dry-run")
    assert_user_error(proc, "array index 2", "--array")
    assert not (tmp_path / "r0").exists()


def test_bad_time(slm_here, tmp_path):
    config = write_config(tmp_path / "run.yaml", tmp_path / "run")
    proc = slm_here("slurm", "submit", "--config", config, "--time", "two days", "--dry-run")
    assert_user_error(proc, "--time")
    assert not (tmp_path / "run").exists()


def test_template_with_unknown_key(slm_here, tmp_path):
    config = write_config(tmp_path / "run.yaml", tmp_path / "run")
    template = tmp_path / "t.yaml"
    template.write_text("nodes: 2\ngpus_per_nod: 8\n")
    assert_user_error(slm_here("slurm", "submit", "--template", template, "--config", config,
                               "--dry-run"), "gpus_per_nod", "t.yaml")


def test_no_sbatch_on_path(slm, tmp_path):
    config = write_config(tmp_path / "run.yaml", tmp_path / "run")
    empty = tmp_path / "bin"
    empty.mkdir()
    proc = slm("slurm", "submit", "--config", config, env={"PATH": str(empty)})
    assert_user_error(proc, "sbatch not found on PATH (is SLURM installed?)")
    assert not (tmp_path / "run").exists()


def test_status_of_a_dir_without_jobs_or_checkpoints(slm_here, tmp_path):
    assert_user_error(slm_here("slurm", "status", tmp_path), "no SLURM job recorded")


def run_launch_with_fake_srun(script: Path, tmp_path: Path, srun_body: str) -> tuple[int, list[str]]:
    """Run the sbatch script with `srun` and `scontrol` replaced by shell stubs on PATH (no
    cluster); returns its exit status and the `scontrol` calls it made."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "scontrol.calls"
    (bin_dir / "srun").write_text("#!/bin/bash\n" + srun_body)
    (bin_dir / "scontrol").write_text(f'#!/bin/bash\necho "$*" >> {calls}\n')
    for stub in bin_dir.iterdir():
        stub.chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "SLURM_JOB_ID": "77", "SLURM_JOB_NODELIST": "node1", "HOME": str(tmp_path)}
    proc = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True)
    return proc.returncode, calls.read_text().splitlines() if calls.exists() else []


def test_hung_step_is_requeued(dry_run, tmp_path):
    run_dir = tmp_path / "run"
    dry_run("--config", write_config(tmp_path / "run.yaml", run_dir))
    # As fault.step_timeout_s does: stacks into RUN_DIR/hang/, then a non-zero exit.
    srun = f'mkdir -p {run_dir}/hang && echo "Thread 0x1 (most recent call first):" >> {run_dir}/hang/rank0.txt\nexit 1\n'
    status, calls = run_launch_with_fake_srun(only_script(run_dir), tmp_path, srun)
    assert status == 1
    assert calls == ["requeue 77"]


def test_other_failures_and_old_stack_dumps_are_not_requeued(dry_run, tmp_path):
    run_dir = tmp_path / "run"
    dry_run("--config", write_config(tmp_path / "run.yaml", run_dir))
    (run_dir / "hang").mkdir(parents=True)
    (run_dir / "hang" / "rank0.txt").write_text("a dump from an earlier job\n")
    status, calls = run_launch_with_fake_srun(only_script(run_dir), tmp_path, "exit 3\n")
    assert status == 3
    assert calls == []
