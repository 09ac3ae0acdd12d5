"""The model card: YAML front matter the Hub reads, a body that says how to load the revision,
and a loss curve that stops at the released step."""

import yaml

from pretrain.release.card import CardMetadata, plot_loss_curve, read_loss_history, render_model_card
from tests.release.conftest import RUN_CONFIG, TINY_MODEL, write_metrics

REPO, REV = "lab/tiny-llama", "step-000040-tokens-82K"


def front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card[4:card.index("\n---\n", 4)])


def render(**overrides):
    kwargs = dict(repo_id=REPO, revision=REV, step=40, tokens_seen=81_920,
                  model_config=TINY_MODEL, run_config=RUN_CONFIG, param_count=172_352,
                  card=CardMetadata(datasets=("cerebras/SlimPajama-627B",), tags=("tiny",)),
                  has_loss_plot=True)
    return render_model_card(**{**kwargs, **overrides})


def test_front_matter_has_the_hub_metadata():
    meta = front_matter(render())
    assert meta["license"] == "apache-2.0"
    assert meta["library_name"] == "transformers"
    assert meta["pipeline_tag"] == "text-generation"
    assert meta["language"] == ["en"]
    assert meta["datasets"] == ["cerebras/SlimPajama-627B"]
    assert "llama" in meta["tags"] and "tiny" in meta["tags"]


def test_license_and_languages_are_configurable():
    meta = front_matter(render(card=CardMetadata(license="mit", languages=("en", "code"))))
    assert meta["license"] == "mit" and meta["language"] == ["en", "code"]


def test_body_says_how_to_load_this_revision_and_what_it_is():
    card = render()
    assert f'AutoModelForCausalLM.from_pretrained("{REPO}", revision="{REV}")' in card
    assert f'AutoTokenizer.from_pretrained("{REPO}", revision="{REV}")' in card
    assert "**40 optimizer steps**" in card and "**81,920 training tokens** (82K)" in card
    assert "| parameters | 172,352 |" in card and "| `n_kv_heads` | 2 |" in card
    assert "![training loss](loss.png)" in card


def test_body_holds_the_resolved_training_config_as_yaml():
    card = render()
    block = card[card.index("```yaml\n") + 8:]
    assert yaml.safe_load(block[:block.index("```")]) == RUN_CONFIG


def test_card_without_metrics_says_so_instead_of_linking_a_missing_image():
    card = render(has_loss_plot=False)
    assert "loss.png" not in card and "no loss curve" in card


def test_loss_history_stops_at_the_released_step(tmp_path):
    points = read_loss_history(write_metrics(tmp_path), max_step=40)
    assert [p.step for p in points if p.loss is not None] == [10, 20, 30, 40]
    assert [(p.step, p.val_loss) for p in points if p.val_loss is not None] == [(40, 5.2)]
    assert points[-1].tokens_seen == 40 * 2048


def test_loss_curve_is_written_as_png(tmp_path):
    points = read_loss_history(write_metrics(tmp_path), max_step=80)
    plot_loss_curve(points, tmp_path / "loss.png", title="t")
    assert (tmp_path / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
