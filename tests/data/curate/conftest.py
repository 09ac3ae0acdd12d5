"""Small real corpora for curation tests."""

import json
from pathlib import Path

import pytest

pytest.importorskip("datatrove")


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def read_output(out: Path) -> list[dict]:
    """Every record of DIR/data, file by file in name order."""
    from tokenizer.corpus import iter_records

    records = []
    for path in sorted((out / "data").glob("*.jsonl.zst")):
        records += [{"text": r.text, **r.fields} for r in iter_records(path)]
    return records


def recipe_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recipe.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture(scope="session")
def noisy_corpus(tmp_path_factory) -> Path:
    """The noisy demo corpus built from ~1 MB of standard-library sources."""
    from data.curate.noisy_corpus import build_noisy_corpus
    from pretrain.training.demo_data import stdlib_sources

    out = tmp_path_factory.mktemp("noisy")
    build_noisy_corpus(out, stdlib_sources(1_000_000), seed=0)
    return out
