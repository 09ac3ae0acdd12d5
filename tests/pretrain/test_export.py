"""`slm export` writes a directory transformers loads with our logits; `slm generate` samples."""

import pytest
import torch

from tests.pretrain.cli_in_process import slm_in_process
from tests.user_errors import assert_user_error


def test_export_loads_in_transformers_with_the_same_logits_and_tokenizer(capsys, trained_run, tmp_path):
    transformers = pytest.importorskip("transformers")
    from pretrain.export import load_model

    out = tmp_path / "hf"
    proc = slm_in_process(capsys, "export", "--checkpoint", trained_run / "checkpoints" / "step-000004",
                          "--output", out)
    assert proc.returncode == 0, proc.stderr
    hf = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    ours = load_model(trained_run / "checkpoints" / "last")
    tokens = torch.randint(0, 1024, (2, 24))
    with torch.no_grad():
        torch.testing.assert_close(hf(tokens).logits, ours(tokens), rtol=0, atol=1e-4)
    tokenizer = transformers.AutoTokenizer.from_pretrained(out)
    assert tokenizer("def f(x): return x")["input_ids"]


def test_export_refuses_a_non_empty_output(capsys, trained_run, tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    proc = slm_in_process(capsys, "export", "--checkpoint", trained_run, "--output", tmp_path)
    assert_user_error(proc, "not an empty directory", "(--output)")
    assert (tmp_path / "keep.txt").read_text() == "mine"


def test_generate_continues_the_prompt_reproducibly(slm, trained_run):
    args = ("generate", "--checkpoint", trained_run, "--prompt", "The river", "--max-new-tokens", "12",
            "--seed", "3")
    first, second = slm(*args, check=True), slm(*args, check=True)
    assert first.stdout.startswith("The river") and len(first.stdout) > len("The river\n")
    assert first.stdout == second.stdout


def test_generate_from_a_missing_checkpoint_is_a_user_error(capsys, tmp_path):
    proc = slm_in_process(capsys, "generate", "--checkpoint", tmp_path / "none", "--prompt", "x")
    assert_user_error(proc, "checkpoint not found")
