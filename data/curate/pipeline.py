"""`curate()`: a recipe → a chain of datatrove passes → ``DIR/data``, ``DIR/report.json``,
``DIR/removed/``.

The passes, each a datatrove pipeline with its own logging dir (completion markers, stats):

    filter          read (our readers) → recipe filters → [reference-model loss] → write
    exact-find      exact dedup stage 2 (stage 1 rides on the previous pass's stream)
    exact-filter    read → drop exact duplicates → write
    minhash-buckets MinHash stage 2 (stage 1, signatures, rides on the previous pass)
    minhash-cluster MinHash stage 3 (one task)
    minhash-filter  read → drop near-duplicates → write
    band-cutpoints  one task: the band's loss cut points over the deduplicated documents
    band-filter     read → keep the band → write

Only the passes the recipe needs are built. The number of tasks (`tasks`) fixes how the
corpus is split, so the output depends on it and never on `workers` (how many tasks run at
once). An interrupted run resumes: a finished task leaves a completion marker and is skipped.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.base import PipelineStep

from data import DataError
from data.curate.recipe import Recipe, filter_class
from tokenizer import TokenizerError

PLAN_FILE = "plan.json"
REPORT_FILE = "report.json"


@dataclass
class Pass:
    name: str
    tasks: int
    steps: list
    # (index in `steps`, role, stage name); roles: "tally", "filter", "reader", "cluster"
    layout: list = field(default_factory=list)


@dataclass
class _DataPass:
    """A pass over the documents: read → `steps` → write, after the `before` passes (the
    dedup stages that need the previous pass's signatures)."""

    name: str
    steps: list
    layout: list
    before: list = field(default_factory=list)
    signature: object = None  # a dedup stage-1 step fed by this pass's output stream


def build_passes(recipe: Recipe, inputs: list[str], out: Path, tasks: int, *,
                 text_key: str = "text", skip_bad_lines: bool = False,
                 exclude_sets: tuple[str, ...] = (), reference_model: str | None = None
                 ) -> list[Pass]:
    """The recipe's passes, in order, writing under `out` (see the module docstring)."""
    from datatrove.pipeline.dedup import (ExactDedupFilter, ExactDedupSignature, ExactFindDedups,
                                          MinhashDedupBuckets, MinhashDedupCluster,
                                          MinhashDedupFilter, MinhashDedupSignature)
    from datatrove.pipeline.dedup.exact_dedup import ExactDedupConfig
    from datatrove.pipeline.dedup.minhash import MinhashConfig

    from data.curate.perplexity import BandCutpoints, BandFilter, ReferenceScorer
    from data.curate.steps import (CorpusReader, PassReader, PassWriter, RemovedSamples, Tally,
                                   exact_dedup_content)

    work = out / "work"

    def removed(stage: str, reason: str):
        per_reason = recipe.samples_per_reason
        return RemovedSamples(str(work / "removed" / stage), per_reason, reason) \
            if per_reason else None

    def removal(name: str, step) -> tuple[list, list]:
        """A removing step and the tally after it, with their report layout."""
        return [step, Tally(name)], [(0, "filter", name), (1, "tally", name)]

    steps = [CorpusReader(inputs, text_key, skip_bad_lines, exclude_sets), Tally("read")]
    layout = [(0, "reader", "read"), (1, "tally", "read")]
    for name, params in recipe.filters:
        more, where = removal(name, filter_class(name)(**params,
                                                       exclusion_writer=removed(name, name)))
        layout += [(len(steps) + i, role, n) for i, role, n in where]
        steps += more
    if recipe.band is not None:  # scored before dedup, so the band pass needs no model
        steps.append(ReferenceScorer(reference_model, recipe.band.tokenizer,
                                     recipe.band.max_tokens))
    data_passes = [_DataPass("filter", steps, layout)]

    if recipe.exact_dedup:
        config = ExactDedupConfig(content_getter=exact_dedup_content)
        data_passes[-1].signature = ExactDedupSignature(str(work / "exact-signatures"), config)
        find = ExactFindDedups(str(work / "exact-signatures"), str(work / "exact-duplicates"),
                               config)
        data_passes.append(_DataPass("exact-filter", *removal("exact_dedup", ExactDedupFilter(
            str(work / "exact-duplicates"), config,
            exclusion_writer=removed("exact_dedup", "exact_duplicate"))),
            before=[Pass("exact-find", 1, [find])]))
    if recipe.minhash is not None:
        m = recipe.minhash
        config = MinhashConfig(n_grams=m.n_grams, num_buckets=m.buckets,
                               hashes_per_bucket=m.hashes_per_bucket, seed=m.seed)
        data_passes[-1].signature = MinhashDedupSignature(str(work / "minhash-signatures"), config)
        buckets = MinhashDedupBuckets(str(work / "minhash-signatures"),
                                      str(work / "minhash-buckets"), config=config)
        cluster = MinhashDedupCluster(str(work / "minhash-buckets"),
                                      str(work / "minhash-clusters"), config=config)
        data_passes.append(_DataPass("minhash-filter", *removal("near_dedup", MinhashDedupFilter(
            str(work / "minhash-clusters"),
            exclusion_writer=removed("near_dedup", "near_duplicate"))),
            before=[Pass("minhash-buckets", m.buckets, [buckets]),
                    Pass("minhash-cluster", 1, [cluster], [(0, "cluster", "near_dedup")])]))
    if recipe.band is not None:
        cutpoints = BandCutpoints(str(work / "passes" / data_passes[-1].name), tasks,
                                  str(work / "band"), recipe.band.keep, recipe.band.fraction)
        data_passes.append(_DataPass("band-filter", *removal("band", BandFilter(
            str(work / "band"), exclusion_writer=removed("band", "band"))),
            before=[Pass("band-cutpoints", 1, [cutpoints])]))

    # Chain them: each data pass reads what the previous one wrote; the last writes DIR/data.
    # The writer passes the stream on to the next dedup's signature step, which consumes it.
    passes: list[Pass] = []
    for i, data_pass in enumerate(data_passes):
        passes += data_pass.before
        steps, layout = list(data_pass.steps), list(data_pass.layout)
        if i > 0:
            steps.insert(0, PassReader(str(work / "passes" / data_passes[i - 1].name)))
            layout = [(index + 1, role, name) for index, role, name in layout]
        final = i == len(data_passes) - 1
        steps.append(PassWriter(str(out / "data" if final else work / "passes" / data_pass.name),
                                final=final))
        if data_pass.signature is not None:
            steps.append(data_pass.signature)
        passes.append(Pass(data_pass.name, tasks, steps, layout))
    return passes


def _quiet_task_logger(logging_dir, rank: int, local_rank: int = 0, node_rank: int = -1):
    """datatrove's task logger without the console: each task logs to its file only, and the
    command prints one progress line per finished task instead."""
    from loguru import logger

    logger.remove()
    logfile = logging_dir.open(f"logs/task_{rank:05d}.log", "w")
    logger.add(logfile, colorize=False, level="DEBUG",
               format="{time:YYYY-MM-DD HH:mm:ss.SSS} | {level: <8} | {name}:{function}:{line}"
                      " - {message}")
    logger.info(f"Launching pipeline for {rank=}")
    return logfile


def _quiet_close_task_logger(logfile) -> None:
    from loguru import logger

    logger.complete()
    _console_warnings_only()
    logfile.close()


def _console_warnings_only() -> None:
    from loguru import logger

    logger.remove()
    logger.add(sys.stderr, level="WARNING", format="{level}: {message}")


def _install_quiet_logging() -> None:
    import datatrove.executor.base as executor_base

    executor_base.add_task_logger = _quiet_task_logger
    executor_base.close_task_logger = _quiet_close_task_logger


class QuietLocalExecutor(LocalPipelineExecutor):
    """datatrove's local executor with the file-only task logger, installed in whichever
    process runs the task (the pool's workers unpickle this class, importing this module)."""

    def _run_for_rank(self, rank: int, local_rank: int = 0, node_rank: int = -1):
        _install_quiet_logging()
        return super()._run_for_rank(rank, local_rank, node_rank)


def local_executor(pipeline_pass: Pass, logging_dir: Path, workers: int) -> QuietLocalExecutor:
    _install_quiet_logging()
    return QuietLocalExecutor(pipeline=pipeline_pass.steps, tasks=pipeline_pass.tasks,
                              workers=max(1, min(workers, pipeline_pass.tasks)),
                              logging_dir=str(logging_dir), skip_completed=True)


class _Progress:
    """Prints `curate [i/n] PASS: k/T tasks done` whenever a completion marker appears."""

    def __init__(self, index: int, count: int, pipeline_pass: Pass, logging_dir: Path):
        self.label = f"curate [{index}/{count}] {pipeline_pass.name}"
        self.tasks = pipeline_pass.tasks
        self.completions = logging_dir / "completions"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._last = -1

    def _done(self) -> int:
        return len(list(self.completions.glob("*"))) if self.completions.is_dir() else 0

    def _watch(self) -> None:
        while not self._stop.wait(1.0):
            self._print()

    def _print(self) -> None:
        done = self._done()
        if done != self._last:
            self._last = done
            print(f"{self.label}: {done}/{self.tasks} tasks done", file=sys.stderr, flush=True)

    def __enter__(self):
        self._print()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        if exc[0] is None:
            self._print()


def check_inputs(inputs: list[str]) -> list[str]:
    """The expanded input files (as `data prepare` expands them), each one readable."""
    import os

    from tokenizer.corpus import expand_inputs

    files = expand_inputs(inputs)
    for path in files:
        if not os.access(path, os.R_OK):
            raise DataError(f"input file is not readable ({path})")
    return [str(p) for p in files]


def prepare_output(out: Path, plan: dict, overwrite: bool) -> bool:
    """Make `out` ready; returns True when it already holds this very plan (resume).

    `overwrite` deletes whatever `out` holds and starts over; without it, a directory holding
    another plan, or anything that is not ours, is refused."""
    plan_file = out / "work" / PLAN_FILE
    if out.exists() and any(out.iterdir()):
        if overwrite:
            shutil.rmtree(out)
        elif plan_file.is_file() and json.loads(plan_file.read_text()) == plan:
            return True
        else:
            what = ("a curation run of another recipe, inputs or task count"
                    if plan_file.is_file() else "other files")
            raise DataError(f"output directory holds {what}; pass --overwrite to replace it, or "
                            f"rerun with the same arguments to resume ({out})")
    from tokenizer.atomic import write_json_atomic

    write_json_atomic(plan_file, plan)
    return False


@dataclass(frozen=True)
class SlurmOptions:
    """Where the passes run on a cluster: the options of `slm slurm submit` that apply to CPU
    jobs. `workers` caps how many tasks of a pass run at once (the array's %N)."""

    partition: str
    time: str = "04:00:00"
    cpus_per_task: int = 1
    mem_per_cpu_gb: int = 2
    account: str | None = None
    qos: str | None = None
    workers: int = -1


def curate(recipe: Recipe, inputs: list[str], out: str | Path, *, tasks: int = 8,
           workers: int = 1, text_key: str = "text", skip_bad_lines: bool = False,
           exclude_sets: tuple[str, ...] = (), reference_model: str | None = None,
           reference_label: str | None = None, overwrite: bool = False,
           progress: bool = True, slurm: SlurmOptions | None = None) -> dict | None:
    """Run (or resume) the recipe over `inputs` into `out`; returns the report.

    Everything the user could get wrong is checked before the first task starts: the inputs,
    the output directory, and the reference model against the recipe's tokenizer.
    `reference_label` is how the user named the model (a checkpoint the command exported to
    the HF directory `reference_model`); the plan records it, so a resume matches.

    With `slurm`, every pass is submitted as a job array depending on the previous pass, plus
    a last one-task job that writes the report; returns None once they are submitted (the
    report appears in `out` when the jobs are done; rerunning submits only unfinished tasks)."""
    out = Path(out)
    if tasks < 1 or workers < 1:
        raise DataError(f"--tasks and --workers must be >= 1, got {tasks} and {workers} ({out})")
    files = check_inputs(inputs)
    band_model = None
    if recipe.band is not None:
        if reference_model is None:
            raise DataError(f"the recipe has a perplexity band: pass --reference-model DIR "
                            f"({recipe.path}: band)")
        from data.curate.perplexity import check_reference_model

        band_model = check_reference_model(reference_model, recipe.band.tokenizer)
        band_model["model"] = reference_label or reference_model
    elif reference_model is not None:
        raise DataError(f"--reference-model given but the recipe has no band ({recipe.path})")
    # Sizes and modification times too: a resume must never mix tasks of an edited input.
    inputs_seen = [[path, os.stat(path).st_size, os.stat(path).st_mtime_ns] for path in files]
    plan = {"recipe": recipe.raw, "recipe_path": recipe.path, "inputs": inputs_seen, "tasks": tasks,
            "text_key": text_key, "skip_bad_lines": skip_bad_lines,
            "exclude_sets": list(exclude_sets),
            "reference_model": reference_label or reference_model}
    resumed = prepare_output(out, plan, overwrite)
    passes = build_passes(recipe, files, out, tasks, text_key=text_key,
                          skip_bad_lines=skip_bad_lines, exclude_sets=tuple(exclude_sets),
                          reference_model=reference_model)
    finish = FinishRun(str(out), recipe, files, tasks, band_model, workers,
                       dict(text_key=text_key, skip_bad_lines=skip_bad_lines,
                            exclude_sets=tuple(exclude_sets), reference_model=reference_model))
    if slurm is not None:
        submit_slurm(passes, out, slurm, finish)
        return None
    _console_warnings_only()
    if resumed and progress:
        print(f"curate: resuming in {out} (finished tasks are skipped)", file=sys.stderr)
    started = time.perf_counter()
    try:
        for index, pipeline_pass in enumerate(passes, start=1):
            logging_dir = out / "work" / "logs" / pipeline_pass.name
            executor = local_executor(pipeline_pass, logging_dir, workers)
            with (_Progress(index, len(passes), pipeline_pass, logging_dir) if progress
                  else _NoProgress()):
                executor.run()
    except (DataError, TokenizerError):  # found mid-run (a bad record): no half-done output
        if not resumed:
            shutil.rmtree(out, ignore_errors=True)
        raise
    return finish.write(seconds=time.perf_counter() - started)


class FinishRun(PipelineStep):
    """The last step of a run: `DIR/report.json`, `DIR/removed/`, and the between-pass data
    deleted (logs and completion markers stay, so a rerun finds every task done). A datatrove
    step so that on SLURM it runs as the last job, after every pass."""

    type = "📊 - STATS"
    name = "report"

    def __init__(self, out: str, recipe: Recipe, files: list[str], tasks: int,
                 band_model: dict | None, workers: int, pass_args: dict):
        super().__init__()
        self.out, self.recipe, self.files, self.tasks = out, recipe, files, tasks
        self.band_model, self.workers, self.pass_args = band_model, workers, pass_args

    def write(self, seconds: float | None = None) -> dict:
        from data.curate.report import build_report, collect_removed_samples
        from tokenizer.atomic import write_json_atomic

        out = Path(self.out)
        passes = build_passes(self.recipe, self.files, out, self.tasks, **self.pass_args)
        report = build_report(passes, out, self.recipe, self.files, self.tasks, self.band_model)
        report["workers"] = self.workers
        if seconds is not None:
            report["seconds"] = round(seconds, 3)
        collect_removed_samples(out, samples_per_reason=self.recipe.samples_per_reason)
        write_json_atomic(out / REPORT_FILE, report)
        for name in ("passes", "exact-signatures", "exact-duplicates", "minhash-signatures",
                     "minhash-buckets", "minhash-clusters"):
            shutil.rmtree(out / "work" / name, ignore_errors=True)
        return report

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        self.write()
        return iter(())


def submit_slurm(passes: list[Pass], out: Path, options: SlurmOptions, finish: FinishRun):
    """One datatrove `SlurmPipelineExecutor` per pass, each depending on the one before, and
    the report job last; datatrove writes the sbatch scripts next to each pass's logs."""
    from datatrove.executor import SlurmPipelineExecutor

    previous = None
    for pipeline_pass in [*passes, Pass("report", 1, [finish])]:
        logging_dir = out / "work" / "logs" / pipeline_pass.name
        previous = SlurmPipelineExecutor(
            pipeline=pipeline_pass.steps, tasks=pipeline_pass.tasks, time=options.time,
            partition=options.partition, cpus_per_task=options.cpus_per_task,
            mem_per_cpu_gb=options.mem_per_cpu_gb, workers=options.workers,
            job_name=f"curate-{pipeline_pass.name}", qos=options.qos or "",
            sbatch_args={"account": options.account} if options.account else None,
            depends=previous, logging_dir=str(logging_dir),
            slurm_logs_folder=str(out / "work" / "slurm" / pipeline_pass.name),
            requeue=False, mail_type="NONE")
    previous.run()  # launches its dependencies first, in order


class _NoProgress:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None
