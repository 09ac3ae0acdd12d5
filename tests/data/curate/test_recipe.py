"""Recipes: the shipped ones load; every mistake is one DataError naming the key and the file."""

from pathlib import Path

import pytest

pytest.importorskip("datatrove")

from data import DataError  # noqa: E402
from data.curate.recipe import load_recipe  # noqa: E402

CONFIGS = Path(__file__).resolve().parents[3] / "configs" / "curate"


@pytest.mark.parametrize("name", ["dedup.yaml", "code.yaml", "web.yaml"])
def test_shipped_recipes_load_with_exact_and_minhash_dedup(name):
    recipe = load_recipe(CONFIGS / name)
    assert recipe.exact_dedup and recipe.minhash is not None
    assert (recipe.minhash.n_grams, recipe.minhash.buckets, recipe.minhash.hashes_per_bucket) \
        == (5, 14, 8)


def test_code_recipe_names_the_code_filter_and_web_the_prose_filters():
    assert [name for name, _ in load_recipe(CONFIGS / "code.yaml").filters] == ["code"]
    assert [name for name, _ in load_recipe(CONFIGS / "web.yaml").filters] == [
        "gopher_repetition", "gopher_quality", "c4_quality", "fineweb_quality"]


def _recipe(tmp_path, text):
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("text, fragment", [
    ("filters:\n  - nonsense: {}\n", "unknown filter 'nonsense'"),
    ("filters:\n  - gopher_quality: {min_words: 3}\n", "unknown parameter 'min_words'"),
    ("filters:\n  - code: {max_line_length: long}\n", "filters.code.max_line_length"),
    ("dedup:\n  minhash: {ngrams: 5}\n", "unknown key 'dedup.minhash.ngrams'"),
    ("dedup:\n  exact: yes please\n", "dedup.exact"),
    ("dedupe:\n  exact: true\n", "unknown key 'dedupe'"),
    ("band:\n  keep: medium\n", "band.tokenizer"),
    ("band:\n  tokenizer: t\n  keep: middle\n", "band.keep"),
    ("band:\n  tokenizer: t\n  fraction: 1.5\n", "band.fraction"),
    ("samples_per_reason: 5\n", "nothing to do"),
])
def test_a_recipe_mistake_is_one_error_naming_the_key_and_file(tmp_path, text, fragment):
    path = _recipe(tmp_path, text)
    with pytest.raises(DataError) as caught:
        load_recipe(path)
    assert fragment in str(caught.value) and str(path) in str(caught.value)


def test_filter_parameters_reach_the_filter(tmp_path):
    recipe = load_recipe(_recipe(tmp_path, "filters:\n  - code: {max_line_length: 80}\n"))
    assert recipe.filters == (("code", {"max_line_length": 80}),)
