"""The stream over a real prepared corpus: document ids line up with BOS/EOS, splits differ."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader

import tokenizer
from data import StreamingTokenDataset


def test_document_ids_change_exactly_after_eos_and_at_bos(prepared_data, trained_tokenizer):
    tok = tokenizer.load(trained_tokenizer)
    dataset = StreamingTokenDataset(prepared_data, seq_len=256, micro_batch_size=4,
                                    document_ids=True, seed=0)
    batch = next(iter(DataLoader(dataset, batch_size=4)))
    ids, documents = batch["input_ids"], batch["document_ids"]
    changes = documents[:, 1:] != documents[:, :-1]
    assert changes.any()
    assert (ids[:, 1:][changes] == tok.bos_id).all()
    assert (ids[:, :-1][changes] == tok.eos_id).all()
    assert ((ids[:, 1:] == tok.bos_id) == changes).all()  # every document start is a change


def test_train_and_val_streams_hold_different_documents(prepared_data):
    def first_tokens(split):
        dataset = StreamingTokenDataset(prepared_data, split, seq_len=64, shuffle=False)
        return {tuple(dataset.sample(i)["input_ids"][:32].tolist()) for i in range(10)}

    assert not first_tokens("train") & first_tokens("val")


def test_the_dataset_reports_vocab_and_tokenizer_from_the_manifest(prepared_data,
                                                                   trained_tokenizer):
    dataset = StreamingTokenDataset(prepared_data, seq_len=64)
    assert dataset.vocab_size == tokenizer.load(trained_tokenizer).vocab_size
    assert dataset.tokenizer_path == str(trained_tokenizer.resolve())
    assert dataset.sample(0)["input_ids"].max() < dataset.vocab_size
    assert isinstance(dataset.sample(0)["labels"], torch.Tensor)
