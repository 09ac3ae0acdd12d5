"""The real pipeline: `slm pretrain` with `HubRelease` configured in its YAML releases milestone
checkpoints of a real run, and the uploaded revision loads with transformers."""

import pytest
import torch

from tests.fixtures.pretrain import tiny_config
from tests.pretrain.cli_in_process import slm_in_process
from tests.release import fake_hub

REPO = "lab/debug-100k"


@pytest.mark.slow
def test_pretrain_yaml_configures_hub_release_and_revisions_load(tmp_path, pretrain_data, capsys):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from pretrain.export import load_model

    fake_hub.SHARED = fake_hub.FakeHfApi()
    run_dir = tmp_path / "run"
    config = tiny_config(
        run_dir, pretrain_data,
        checkpoint={"every_n_steps": 100, "keep_last": 1, "milestone_every_tokens": 512},
        trainer={"max_steps": 4, "callbacks": [{
            "class_path": "pretrain.release.HubRelease",
            "init_args": {"repo": REPO, "update_main": True, "attempts": 1,
                          "api_factory": "tests.release.fake_hub.shared_fake_hub"}}]})
    proc = slm_in_process(capsys, "pretrain", "--config", config)
    assert proc.returncode == 0, proc.stderr
    api = fake_hub.SHARED
    revisions = ["step-000002-tokens-512", "step-000004-tokens-1K"]
    assert set(api.repos[REPO].branches) == {"main", *revisions}
    assert all(len(api.commits_on(REPO, r)) == 2 for r in revisions)

    download = tmp_path / "download"
    for path, data in api.branch_files(REPO, revisions[-1]).items():
        (download / path).parent.mkdir(parents=True, exist_ok=True)
        (download / path).write_bytes(data)
    hf_model = AutoModelForCausalLM.from_pretrained(download).eval()
    tokenizer = AutoTokenizer.from_pretrained(download)
    ours = load_model(run_dir / "checkpoints" / revisions[-1])
    ids = torch.tensor([tokenizer("The river walked quickly")["input_ids"]])
    with torch.no_grad():
        assert torch.allclose(hf_model(ids).logits, ours(ids), atol=1e-4)
    assert 'revision="step-000004-tokens-1K"' in (download / "README.md").read_text()
    assert (download / "loss.png").exists()
