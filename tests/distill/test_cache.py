"""`slm distill cache`: the teacher's top-K for every training token, aligned with the samples
training reads, resumable, identical for any worker count, checked against the shards."""

import json
import os

import numpy as np
import pytest
import torch

from data import StreamingTokenDataset
from pretrain.distill import cache_format as fmt
from pretrain.distill.cache import build_cache
from pretrain.distill.cache_reader import TeacherCache, open_teacher_targets
from pretrain.distill.teacher import load_teacher
from pretrain.errors import PretrainError
from tests.distill.conftest import SEQ_LEN, TOP_K, cache_job
from tests.pretrain.cli_in_process import slm_in_process
from tests.user_errors import assert_user_error


def cache_bytes(directory):
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def test_every_sample_gets_the_teacher_top_k_of_its_own_context(teacher_cache, trained_run,
                                                                 pretrain_data):
    targets = open_teacher_targets(teacher_cache, pretrain_data, seq_len=SEQ_LEN)
    dataset = StreamingTokenDataset(pretrain_data, "train", seq_len=SEQ_LEN, seed=5,
                                    transform=targets)
    teacher = load_teacher(trained_run)
    for sample_index in (0, 7, 123, dataset.sources[0].index.samples_per_epoch + 3):
        sample = dataset.sample(sample_index)
        with torch.no_grad():
            logprobs = torch.log_softmax(teacher(sample["input_ids"][None])[0], -1)
        want_logprobs, want_ids = logprobs.topk(TOP_K, dim=-1)
        assert sample["teacher_logprobs"].shape == (SEQ_LEN, TOP_K)
        assert sample["teacher_logprobs"].dtype == torch.float16
        assert torch.equal(sample["teacher_ids"], want_ids.int())
        torch.testing.assert_close(sample["teacher_logprobs"].float(), want_logprobs,
                                   rtol=1e-3, atol=1e-3)  # float16: 11 bits of mantissa


def test_the_manifest_records_what_the_cache_is_tied_to(teacher_cache, pretrain_data):
    manifest = json.loads((teacher_cache / fmt.MANIFEST).read_text())
    token_shards = json.loads((pretrain_data / "manifest.json").read_text())["splits"]["train"]["shards"]
    assert (manifest["seq_len"], manifest["top_k"], manifest["document_masking"]) == (SEQ_LEN, TOP_K, False)
    assert manifest["bytes_per_token"] == TOP_K * (2 + 2)  # float16 log-probs + uint16 ids
    assert [s["rows"] for s in manifest["shards"]] == [
        (s["tokens"] - 1) // SEQ_LEN * SEQ_LEN for s in token_shards]
    assert not (teacher_cache / fmt.PROGRESS).exists()


def test_the_bytes_are_identical_for_one_and_two_workers(teacher_cache, trained_run,
                                                         pretrain_data, tmp_path):
    build_cache(cache_job(trained_run, pretrain_data), tmp_path / "two", workers=2)
    assert cache_bytes(tmp_path / "two") == cache_bytes(teacher_cache)


@pytest.mark.slow
def test_the_bytes_are_identical_for_one_and_all_threads(teacher_cache, trained_run,
                                                         pretrain_data, tmp_path):
    build_cache(cache_job(trained_run, pretrain_data), tmp_path / "all",
                threads_per_worker=os.cpu_count())
    assert cache_bytes(tmp_path / "all") == cache_bytes(teacher_cache)


def test_an_interrupted_cache_resumes_to_the_same_bytes_computing_only_the_rest(
        teacher_cache, trained_run, pretrain_data, tmp_path, monkeypatch):
    from pretrain.distill import cache

    computed, original = [], cache._ShardComputer.compute

    def crash_after_two_shards(self, shard):
        if len(computed) == 2:
            raise KeyboardInterrupt
        computed.append(shard)
        return original(self, shard)

    monkeypatch.setattr(cache._ShardComputer, "compute", crash_after_two_shards)
    with pytest.raises(KeyboardInterrupt):
        build_cache(cache_job(trained_run, pretrain_data), tmp_path / "out", threads_per_worker=1)
    left = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert fmt.MANIFEST not in left and fmt.PROGRESS in left and not any(".tmp" in n for n in left)
    monkeypatch.setattr(cache._ShardComputer, "compute", original)
    shards = len(json.loads((teacher_cache / fmt.MANIFEST).read_text())["shards"])
    resumed = []
    monkeypatch.setattr(cache._ShardComputer, "compute",
                        lambda self, shard: resumed.append(shard) or original(self, shard))
    build_cache(cache_job(trained_run, pretrain_data), tmp_path / "out", threads_per_worker=1)
    assert resumed == list(range(2, shards))
    assert cache_bytes(tmp_path / "out") == cache_bytes(teacher_cache)


def test_resuming_with_other_settings_is_refused(trained_run, pretrain_data, tmp_path):
    output = tmp_path / "out"
    output.mkdir()
    (output / fmt.PROGRESS).write_text(json.dumps({"settings": {"top_k": 99}}))
    with pytest.raises(PretrainError, match=r"made with other settings \(.*top_k.*\); use a new --output"):
        build_cache(cache_job(trained_run, pretrain_data), output)


@pytest.mark.parametrize("change, message", [
    ({"seq_len": 16}, "holds contexts of seq_len 32, training uses 16"),
    ({"document_masking": True}, "made without document masking, training uses it"),
    ({"top_k": TOP_K + 1}, "top_k 9 is outside the cache's 1..8"),
    ({"student_vocab_size": 512}, "predicts 1024 ids, the student only 512"),
])
def test_a_cache_that_does_not_fit_the_training_run_is_one_error(teacher_cache, pretrain_data,
                                                                 change, message):
    settings = {"seq_len": SEQ_LEN, **change}
    with pytest.raises(PretrainError, match=message):
        TeacherCache(teacher_cache, pretrain_data, **settings)


def test_a_cache_of_other_token_shards_is_refused(teacher_cache, prepared_data):
    with pytest.raises(PretrainError, match="made from other token shards"):
        TeacherCache(teacher_cache, prepared_data, seq_len=SEQ_LEN)


def test_a_truncated_cache_file_is_refused(teacher_cache, tmp_path):
    import shutil

    copy = shutil.copytree(teacher_cache, tmp_path / "copy")
    ids = copy / "train-00000.ids"
    ids.write_bytes(ids.read_bytes()[:-2])
    with pytest.raises(PretrainError, match=r"teacher cache file missing or not \d+ bytes"):
        TeacherCache(copy, json.loads((copy / fmt.MANIFEST).read_text())["data"]["path"],
                     seq_len=SEQ_LEN)


def test_targets_follow_the_sample_at_any_world_size(teacher_cache, pretrain_data):
    targets = open_teacher_targets(teacher_cache, pretrain_data, seq_len=SEQ_LEN, top_k=4)

    def stream(rank, world_size):
        dataset = StreamingTokenDataset(pretrain_data, "train", seq_len=SEQ_LEN, seed=1,
                                        micro_batch_size=2, rank=rank, world_size=world_size,
                                        num_samples=8, transform=targets)
        return list(dataset)

    one = stream(0, 1)
    two = [s for pair in zip(*(np.array_split(stream(r, 2), 2) for r in (0, 1)))
           for part in pair for s in part]  # rank r holds micro-batches r, r + 2, ...
    assert len(one) == len(two) == 8
    for a, b in zip(one, two):
        assert torch.equal(a["input_ids"], b["input_ids"])
        assert torch.equal(a["teacher_ids"], b["teacher_ids"]) and a["teacher_ids"].shape[1] == 4


def test_slm_distill_cache_prints_the_bytes_per_token(capsys, teacher_cache, trained_run,
                                                      pretrain_data):
    # the session cache is complete: the command recognises it and reports; without --seq-len
    # the contexts are the teacher run's own training seq_len
    proc = slm_in_process(capsys, "distill", "cache", "--teacher", trained_run, "--data",
                          pretrain_data, "--top-k", TOP_K, "--batch-size", 4,
                          "--output", teacher_cache, "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith(f"top-{TOP_K} at seq_len {SEQ_LEN}, {TOP_K * 4} bytes per token")


@pytest.mark.parametrize("teacher, fragment", [("missing", "teacher not found"),
                                               ("empty", "teacher is not a Llama")])
def test_slm_distill_cache_with_a_bad_teacher_is_one_error_line(capsys, pretrain_data, tmp_path,
                                                                teacher, fragment):
    (tmp_path / "empty").mkdir()
    proc = slm_in_process(capsys, "distill", "cache", "--teacher", tmp_path / teacher, "--data",
                          pretrain_data, "--top-k", 4, "--seq-len", SEQ_LEN, "--output",
                          tmp_path / "out")
    assert_user_error(proc, fragment)
    assert not (tmp_path / "out").exists()
