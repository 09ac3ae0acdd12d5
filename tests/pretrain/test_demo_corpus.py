"""The site-packages demo corpus (single epoch, deterministic) and the single-epoch plan rule."""

import hashlib
import json

import pytest

from pretrain.errors import PretrainError
from pretrain.training import demo_data
from pretrain.training.plan import check_single_epoch, resolve_plan
from tests.fixtures.pretrain import tiny_config
from tests.pretrain.cli_in_process import slm_in_process
from tests.user_errors import assert_user_error

CAP = 400_000  # bytes of sources read: a few dozen files, seconds to tokenise


def test_the_corpus_is_the_same_for_the_same_installed_packages(tmp_path):
    first = demo_data.write_site_packages_corpus(tmp_path / "a", CAP)
    second = demo_data.write_site_packages_corpus(tmp_path / "b", CAP)
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]
    meta = json.loads((tmp_path / "a" / demo_data.CORPUS_META).read_text())
    assert meta == json.loads((tmp_path / "b" / demo_data.CORPUS_META).read_text())
    assert len(meta["fingerprint"]) == 64 and meta["max_bytes"] == CAP
    assert 0 < meta["bytes"] <= meta["bytes_read"] <= CAP
    texts = [json.loads(line)["text"] for p in first for line in p.open()]
    assert len(texts) == meta["documents"] and all(t.isascii() for t in texts)


def test_the_corpus_takes_files_in_the_order_of_a_hash_of_their_path():
    names = [name for name, _ in demo_data.site_packages_sources(CAP)]
    digests = [hashlib.sha256(name.encode()).digest() for name in names]
    assert digests == sorted(digests) and all(name.endswith(".py") for name in names)
    assert not any("__pycache__" in name for name in names)
    # a sample of all packages, not the first few of the alphabet
    packages = {name.split("/")[0] for name in names}
    assert len(packages) >= 5 and names != sorted(names)


def test_a_corpus_built_in_path_order_is_refused_before_any_work(tmp_path):
    demo_data.write_site_packages_corpus(tmp_path / "site-packages-corpus", CAP)
    meta_path = tmp_path / "site-packages-corpus" / demo_data.CORPUS_META
    meta = json.loads(meta_path.read_text())
    assert meta["order"] == demo_data.SITE_PACKAGES_ORDER
    del meta["order"]  # as written by the earlier, path-ordered version
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(PretrainError, match="built in path order .* delete it to rebuild"):
        demo_data.ensure_demo_data(tmp_path / "shards", "site-packages", 512, CAP)
    assert not (tmp_path / "shards").exists() and not (tmp_path / "tokenizer").exists()


def test_a_corpus_directory_built_with_another_cap_is_refused(tmp_path):
    demo_data.write_site_packages_corpus(tmp_path / "c", CAP)
    with pytest.raises(PretrainError, match="capped at 400000 bytes, not 500000"):
        demo_data.write_site_packages_corpus(tmp_path / "c", 500_000)


def test_an_interrupted_build_keeps_its_finished_parts(tmp_path, monkeypatch):
    monkeypatch.setattr(demo_data, "PART_BYTES", 40_000)
    parts = demo_data.write_site_packages_corpus(tmp_path / "c", CAP)
    assert len(parts) >= 3
    (tmp_path / "c" / demo_data.CORPUS_META).unlink()  # as if stopped before the end
    stamp = parts[0].stat().st_mtime_ns
    again = demo_data.write_site_packages_corpus(tmp_path / "c", CAP)
    assert again == parts and parts[0].stat().st_mtime_ns == stamp


def _plan(steps, batch_tokens=256, seq_len=32):
    return resolve_plan(seq_len=seq_len, max_seq_len=seq_len, micro_batch_size=8, world_size=1,
                        global_batch_tokens=batch_tokens, document_masking=False,
                        data_has_document_ids=False, max_steps=steps, max_tokens=None,
                        val_every_n_steps=1)


def test_single_epoch_allows_exactly_one_epoch():
    check_single_epoch(_plan(10), [("d", 1.0, 80)])  # 10 steps × 8 samples = one epoch


def test_single_epoch_refuses_one_sample_more_than_an_epoch():
    with pytest.raises(PretrainError, match=r"needs 2,816 training tokens \(88 samples of 32\) "
                                            r"but one epoch of d holds 2,784"):
        check_single_epoch(_plan(11), [("d", 1.0, 87)])


def test_single_epoch_checks_each_source_at_its_mixing_share():
    check_single_epoch(_plan(10), [("a", 0.5, 40), ("b", 0.5, 40)])
    with pytest.raises(PretrainError, match="one epoch of b"):
        check_single_epoch(_plan(10), [("a", 0.75, 60), ("b", 0.25, 19)])


def test_the_demo_corpus_is_built_then_a_run_that_would_repeat_it_is_refused(capsys, tmp_path):
    data = tmp_path / "demo" / "shards"
    config = tiny_config(tmp_path / "run", data, model={"vocab_size": 512},
                         data={"demo_corpus": "site-packages", "demo_vocab_size": 512,
                               "demo_max_bytes": CAP},
                         trainer={"max_steps": 100_000})
    proc = slm_in_process(capsys, "pretrain", "--config", config)
    assert_user_error(proc, "the run would repeat data: it needs 25,600,000 training tokens",
                      "(data.single_epoch)")
    assert not (tmp_path / "run").exists()
    manifest = json.loads((data / "manifest.json").read_text())  # prepared, kept for reuse
    assert manifest["splits"]["train"]["tokens"] > 0
    corpus = json.loads((tmp_path / "demo" / "site-packages-corpus" / "corpus.json").read_text())
    assert corpus["max_bytes"] == CAP


def test_single_epoch_can_be_switched_on_for_any_data(capsys, pretrain_data, tmp_path):
    config = tiny_config(tmp_path / "run", pretrain_data, trainer={"max_steps": 100_000})
    proc = slm_in_process(capsys, "pretrain", "--config", config, "--data.single_epoch", "true")
    assert_user_error(proc, "the run would repeat data", "lower trainer.max_steps")
