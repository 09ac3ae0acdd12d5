"""`DIR/report.json` from the passes' datatrove stats (summed over every task's
``stats/{rank}.json``, so a resumed run counts each task once), the printed table, and the
removed samples merged into ``DIR/removed/{reason}.jsonl``."""

from __future__ import annotations

import json
from pathlib import Path


def _pass_stats(logging_dir: Path):
    """Per step of the pass: {label: total} summed over tasks."""
    files = sorted((logging_dir / "stats").glob("*.json"))
    summed: list[dict[str, float]] = []
    for path in files:
        for index, step in enumerate(json.loads(path.read_text())):
            if index >= len(summed):
                summed.append({})
            for label, value in step["stats"].items():
                total = value["total"] if isinstance(value, dict) else value
                summed[index][label] = summed[index].get(label, 0) + total
    return summed


def build_report(passes, out: Path, recipe, files: list[str], tasks: int,
                 band_model: dict | None) -> dict:
    """Stages in order, each ``{"stage", "documents_in", "bytes_in", "documents_out",
    "bytes_out", "removed": {reason: documents}}``; MinHash adds ``duplicate_clusters`` and
    ``documents_in_clusters``; the read stage lists skipped bad records."""
    stages: list[dict] = []
    previous = None
    skipped: dict[str, int] = {}
    clusters: dict | None = None
    for pipeline_pass in passes:
        stats = _pass_stats(out / "work" / "logs" / pipeline_pass.name)
        at = lambda index: stats[index] if index < len(stats) else {}  # noqa: E731
        pending_filter = None
        for index, role, name in pipeline_pass.layout:
            step = at(index)
            if role == "reader":
                skipped = {label[len("skipped_"):]: int(v) for label, v in step.items()
                           if label.startswith("skipped_")}
            elif role == "cluster":
                size = step.get("cluster_size", 0)
                clusters = {"duplicate_clusters": int(_count(out, pipeline_pass.name, index)),
                            "documents_in_clusters": int(size)}
            elif role == "filter":
                pending_filter = step
            elif role == "tally":
                point = {"documents": int(step.get("documents", 0)),
                         "bytes": int(step.get("bytes", 0))}
                if previous is None:  # the read tally: the corpus as read
                    stages.append({"stage": "read", "documents_in": point["documents"],
                                   "bytes_in": point["bytes"], "documents_out": point["documents"],
                                   "bytes_out": point["bytes"], "removed": {},
                                   "skipped_bad_records": skipped})
                else:
                    removed = {label[len("dropped_"):]: int(v)
                               for label, v in (pending_filter or {}).items()
                               if label.startswith("dropped_")}
                    dropped = int((pending_filter or {}).get("dropped", 0))
                    if dropped > sum(removed.values()):
                        removed[_DEFAULT_REASON.get(name, name)] = dropped - sum(removed.values())
                    stage = {"stage": name, "documents_in": previous["documents"],
                             "bytes_in": previous["bytes"], "documents_out": point["documents"],
                             "bytes_out": point["bytes"], "removed": removed}
                    if name == "near_dedup" and clusters is not None:
                        stage.update(clusters)
                    stages.append(stage)
                previous = point
    report = {
        "recipe": recipe.path, "inputs": files, "tasks": tasks, "stages": stages,
        "documents_in": stages[0]["documents_in"] if stages else 0,
        "documents_out": stages[-1]["documents_out"] if stages else 0,
        "bytes_in": stages[0]["bytes_in"] if stages else 0,
        "bytes_out": stages[-1]["bytes_out"] if stages else 0,
        "output": sorted(str(p.relative_to(out)) for p in (out / "data").glob("*.jsonl.zst")),
    }
    if band_model is not None:
        band_file = out / "work" / "band" / "band.json"
        report["band"] = {**band_model, **json.loads(band_file.read_text())}
    return report


_DEFAULT_REASON = {"exact_dedup": "exact_duplicate", "near_dedup": "near_duplicate",
                   "band": "band"}


def _count(out: Path, pass_name: str, index: int) -> int:
    """MinHash stage 3 counts one `cluster_size` update per cluster: its `n`."""
    total = 0
    for path in sorted((out / "work" / "logs" / pass_name / "stats").glob("*.json")):
        value = json.loads(path.read_text())[index]["stats"].get("cluster_size", 0)
        total += value.get("n", 1) if isinstance(value, dict) else (1 if value else 0)
    return total


def collect_removed_samples(out: Path, samples_per_reason: int) -> None:
    """``DIR/removed/{reason}.jsonl``: the first `samples_per_reason` removed documents of each
    reason, in task order (so the samples, too, do not depend on the worker count)."""
    from tokenizer.atomic import atomic_file

    by_reason: dict[str, list[str]] = {}
    root = out / "work" / "removed"
    for stage_dir in sorted(root.glob("*")) if root.is_dir() else []:
        for path in sorted(stage_dir.glob("*.jsonl")):
            for line in path.read_text(encoding="utf-8").splitlines():
                reason = json.loads(line)["reason"]
                kept = by_reason.setdefault(reason, [])
                if len(kept) < samples_per_reason:
                    kept.append(line)
    for reason, lines in sorted(by_reason.items()):
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in reason)
        with atomic_file(out / "removed" / f"{safe}.jsonl") as f:
            f.write("\n".join(lines) + "\n")


def format_report(report: dict) -> str:
    """The per-stage table `slm data curate` prints."""
    rows = [("stage", "docs in", "docs out", "MB in", "MB out", "removed")]
    for stage in report["stages"]:
        reasons = ", ".join(f"{reason} {count:,}" for reason, count in
                            sorted(stage["removed"].items(), key=lambda kv: -kv[1]) if count)
        if stage.get("duplicate_clusters"):
            reasons += (f" ({stage['duplicate_clusters']:,} clusters of "
                        f"{stage['documents_in_clusters']:,} docs)")
        skipped = stage.get("skipped_bad_records")
        if skipped:
            reasons = ", ".join(f"skipped {reason} {count:,}" for reason, count in skipped.items())
        rows.append((stage["stage"], f"{stage['documents_in']:,}", f"{stage['documents_out']:,}",
                     f"{stage['bytes_in'] / 1e6:.2f}", f"{stage['bytes_out'] / 1e6:.2f}",
                     reasons or "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                       for i, (cell, w) in enumerate(zip(row[:5], widths))) + "  " + row[5]
             for row in rows]
    kept = report["documents_out"] / max(report["documents_in"], 1)
    lines.append(f"kept {report['documents_out']:,} of {report['documents_in']:,} documents "
                 f"({kept:.1%}), {report['bytes_out'] / 1e6:.2f} of "
                 f"{report['bytes_in'] / 1e6:.2f} MB")
    if "band" in report:
        band = report["band"]
        lines.append(f"band: {band['keep']} {band['fraction']:.0%} by reference loss "
                     f"[{band['low_loss']:.3f}, {band['high_loss']:.3f}] nats/token")
    return "\n".join(lines)
