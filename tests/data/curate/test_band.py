"""The perplexity band: a reference model's per-document loss picks the kept band; a
reference model of another tokenizer is refused before any work."""

import math

import pytest
import torch

from tests.data.curate.conftest import read_output, recipe_file, write_jsonl
from tests.fixtures.tokenizer import varied_documents

from data import DataError  # noqa: E402
from data.curate.perplexity import band_cutpoints  # noqa: E402
from data.curate.pipeline import curate  # noqa: E402
from data.curate.recipe import load_recipe  # noqa: E402


@pytest.fixture(scope="module")
def reference_model(trained_tokenizer, tmp_path_factory):
    """A small Llama in an HF directory with the tokenizer it goes with (`slm export`'s
    layout); random weights give distinct losses, which is all the band needs."""
    from model import Llama, LlamaConfig
    from model.hf import save_pretrained

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=1024, dim=64, n_layers=2, n_heads=4, n_kv_heads=2,
                         ffn_dim=128, max_seq_len=128)
    return save_pretrained(Llama(config), tmp_path_factory.mktemp("ref") / "hf", trained_tokenizer)


def _losses(model_dir, tokenizer_dir, texts, max_tokens):
    from model.hf import load_pretrained
    from tokenizer.sentencepiece_tokenizer import load

    model, tok = load_pretrained(model_dir), load(tokenizer_dir)
    losses = []
    with torch.inference_mode():
        for text in texts:
            ids = torch.tensor([([tok.bos_id] + tok.encode(text))[:max_tokens]])
            logits = model(ids[:, :-1])
            losses.append(torch.nn.functional.cross_entropy(logits[0], ids[0, 1:]).item())
    return losses


def test_medium_band_keeps_the_middle_half_by_reference_loss(tmp_path, trained_tokenizer,
                                                            reference_model):
    texts = varied_documents(40, seed=3)[:20]
    records = [{"text": t, "id": i} for i, t in enumerate(texts)]
    recipe = recipe_file(tmp_path, f"band:\n  tokenizer: {trained_tokenizer}\n  keep: medium\n"
                                   f"  fraction: 0.5\n  max_tokens: 64\n")
    report = curate(load_recipe(recipe), [str(write_jsonl(tmp_path / "in.jsonl", records))],
                    tmp_path / "out", tasks=2, reference_model=str(reference_model),
                    progress=False)
    losses = _losses(reference_model, trained_tokenizer, texts, 64)
    middle = sorted(range(20), key=lambda i: losses[i])[5:15]
    assert {r["id"] for r in read_output(tmp_path / "out")} == set(middle)
    assert report["band"]["keep"] == "medium" and report["stages"][-1]["removed"] == {
        "band_below": 5, "band_above": 5}


def test_band_cutpoints_pick_the_low_medium_and_high_fractions():
    losses = [float(x) for x in range(10)]
    assert band_cutpoints(losses, "low", 0.3) == (0.0, 2.0)
    assert band_cutpoints(losses, "high", 0.3) == (7.0, 9.0)
    assert band_cutpoints(losses, "medium", 0.4) == (3.0, 6.0)
    assert band_cutpoints([math.inf], "medium", 0.5) == (math.inf, -math.inf)


def test_a_reference_model_of_another_tokenizer_is_refused(tmp_path, corpus_files,
                                                           reference_model):
    import tokenizer

    other = tokenizer.train(corpus_files.paths[:2], 1024, tmp_path / "other-tok", seed=1)
    recipe = recipe_file(tmp_path, f"band:\n  tokenizer: {other}\n")
    with pytest.raises(DataError, match="another tokenizer"):
        curate(load_recipe(recipe), [str(corpus_files.paths[0])], tmp_path / "out",
               reference_model=str(reference_model), progress=False)
    assert not (tmp_path / "out").exists()


def test_cli_missing_reference_model_is_one_error_line_and_writes_nothing(
        tmp_path, slm, trained_tokenizer, corpus_files):
    from tests.user_errors import assert_user_error

    recipe = recipe_file(tmp_path, f"band:\n  tokenizer: {trained_tokenizer}\n")
    proc = slm("data", "curate", "--input", corpus_files.paths[0], "--recipe", recipe,
               "--output", tmp_path / "out", "--reference-model", tmp_path / "nope")
    assert_user_error(proc, "no such reference model", str(tmp_path / "nope"))
    assert not (tmp_path / "out").exists()
