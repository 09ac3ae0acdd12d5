"""`slm data inspect`: what a prepared directory holds, a decoded sample, checksum checks."""

from __future__ import annotations

import logging
from pathlib import Path

from data.shards import SPLITS, check_checksums, open_tokens, read_manifest, token_dtype

log = logging.getLogger(__name__)
SAMPLE_TOKENS = 64


def summarize(directory: str | Path, *, verify: bool = False) -> dict:
    """Totals, per-input stats, skips, a decoded sample and (with `verify`) checksum problems.

    Raises DataError if the directory is not a complete prepared one, or (with `verify`) if
    any shard or index file is missing or differs from its recorded sha256.
    """
    directory = Path(directory)
    manifest = read_manifest(directory)
    summary = {
        "directory": str(directory), "tokenizer": manifest["tokenizer"],
        "dtype": manifest["dtype"], "bos": manifest["bos"], "eos": manifest["eos"],
        "splits": {split: {k: v for k, v in manifest["splits"][split].items() if k != "shards"}
                   | {"shards": len(manifest["splits"][split]["shards"])}
                   for split in SPLITS if split in manifest["splits"]},
        "inputs": manifest["inputs"], "skipped": manifest["skipped"],
        "sample": _decoded_sample(directory, manifest),
    }
    if verify:
        summary["verified_files"] = check_checksums(directory, manifest)
    return summary


def _decoded_sample(directory: Path, manifest: dict) -> dict:
    """The first tokens of the train split, decoded with the recorded tokenizer when it exists."""
    shards = manifest["splits"].get("train", {}).get("shards") or []
    if not shards:
        return {"text": None, "note": "the train split is empty"}
    shard = shards[0]
    ids = open_tokens(directory, shard, token_dtype(manifest["dtype"]))[:SAMPLE_TOKENS].tolist()
    path = manifest["tokenizer"].get("path")
    if not path or not Path(path).exists():
        return {"file": shard["file"], "ids": ids, "text": None,
                "note": f"tokenizer not found at {path}: ids shown undecoded"}
    from tokenizer import TokenizerError, load

    try:
        tokenizer = load(path)
    except TokenizerError as e:
        return {"file": shard["file"], "ids": ids, "text": None, "note": str(e)}
    note = None
    if tokenizer.fingerprint != manifest["tokenizer"]["fingerprint"]:
        note = f"the tokenizer at {path} changed since prepare (fingerprint differs)"
    return {"file": shard["file"], "ids": ids, "text": tokenizer.decode(ids), "note": note}


def format_summary(summary: dict) -> str:
    """The human-readable report of `summarize`."""
    tok = summary["tokenizer"]
    lines = [f"prepared data: {summary['directory']}",
             f"tokenizer: {tok['path']} (vocab {tok['vocab_size']:,}, fingerprint "
             f"{tok['fingerprint'][:12]}); dtype {summary['dtype']}; BOS at document start: "
             f"{'yes' if summary['bos'] else 'no'}; EOS at document end: "
             f"{'yes' if summary['eos'] else 'no'}",
             f"{'split':<6} {'tokens':>15} {'documents':>12} {'shards':>7}"]
    for split, entry in summary["splits"].items():
        lines.append(f"{split:<6} {entry['tokens']:>15,} {entry['documents']:>12,} "
                     f"{entry['shards']:>7,}")
    lines.append(f"inputs ({len(summary['inputs'])}):")
    for entry in summary["inputs"]:
        skipped = ", ".join(f"{reason} {n}" for reason, n in entry["skipped"].items())
        lines.append(f"  {entry['path']}: {entry['documents']:,} documents "
                     f"({entry['val_documents']:,} val), {entry['tokens']:,} tokens"
                     + (f"; skipped: {skipped}" if skipped else ""))
    skipped = summary["skipped"]
    lines.append("skipped records: " + (", ".join(f"{reason}: {n:,}" for reason, n
                                                  in skipped.items()) if skipped else "none"))
    sample = summary["sample"]
    if sample.get("text") is not None:
        lines.append(f"sample ({sample['file']}, first {len(sample['ids'])} tokens): "
                     f"{sample['text']!r}")
    elif sample.get("ids") is not None:
        lines.append(f"sample ({sample['file']}): ids {sample['ids']}")
    if sample.get("note"):
        lines.append(f"note: {sample['note']}")
    if "verified_files" in summary:
        lines.append(f"checksums: all {summary['verified_files']} shard and index files match")
    return "\n".join(lines)
