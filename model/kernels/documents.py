"""Document masks for packed sequences, in the forms the fused attention kernels take.

`document_ids` [B, S] (same id = same document) is the model's form (see `model.attention`).
Varlen kernels (flash-attn, xformers) instead take the packed rows as one long sequence cut
at `cu_seqlens`; FlexAttention takes a `BlockMask`. Both are derived here, once per batch:
every layer of a forward gets the same `document_ids` tensor, so the last result is memoised
on that tensor's identity (and version, so an in-place change is seen).

Assumption of the varlen form: a document is a contiguous run of positions in a row (which
is how packing produces them); a row boundary always starts a new document.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch


@dataclass(frozen=True)
class PackedDocuments:
    """cu_seqlens: int32 [n_docs + 1] offsets into the flattened B*S positions;
    max_seqlen: length of the longest document (a Python int: kernels size grids by it)."""

    cu_seqlens: torch.Tensor
    max_seqlen: int


class _LastResult:
    """One-slot memo keyed on a tensor's identity + version (holding the tensor keeps its
    address from being reused, so identity cannot be confused with a new batch)."""

    def __init__(self):
        self.key = None
        self.tensor = None
        self.value = None

    def get(self, tensor: torch.Tensor, extra, compute):
        key = (tensor._version, extra)
        if self.tensor is not tensor or self.key != key:
            self.value = compute()
            self.tensor, self.key = tensor, key
        return self.value


_packed_memo = _LastResult()
_block_mask_memo = _LastResult()


def pack_documents(document_ids: torch.Tensor) -> PackedDocuments:
    """The varlen form of `document_ids` [B, S]: each maximal run of equal ids in a row is one
    sequence. One host sync (nonzero, max) per new batch."""

    def compute():
        starts = torch.ones_like(document_ids, dtype=torch.bool)
        starts[:, 1:] = document_ids[:, 1:] != document_ids[:, :-1]
        start_positions = starts.flatten().nonzero().flatten()
        total = torch.tensor([document_ids.numel()], device=document_ids.device)
        cu_seqlens = torch.cat([start_positions, total]).to(torch.int32)
        return PackedDocuments(cu_seqlens, int((cu_seqlens[1:] - cu_seqlens[:-1]).max()))

    return _packed_memo.get(document_ids, None, compute)


def document_lengths(document_ids: torch.Tensor) -> list[int]:
    """Lengths of the runs of `pack_documents`, in order (for xformers' block-diagonal bias)."""
    cu_seqlens = pack_documents(document_ids).cu_seqlens
    return (cu_seqlens[1:] - cu_seqlens[:-1]).tolist()


def document_block_mask(document_ids: torch.Tensor | None, q_len: int, kv_len: int,
                        device: torch.device):
    """FlexAttention `BlockMask` for causal (bottom-right aligned, as in `model.attention`)
    attention, restricted to documents when `document_ids` [B, kv_len] is given."""
    from torch.nn.attention.flex_attention import create_block_mask

    if document_ids is None:
        return _causal_block_mask(q_len, kv_len, str(device))
    offset = kv_len - q_len

    def causal_same_document(b, h, q_idx, kv_idx):
        same_document = document_ids[b, q_idx + offset] == document_ids[b, kv_idx]
        return (kv_idx <= q_idx + offset) & same_document

    return _block_mask_memo.get(
        document_ids, (q_len, kv_len, str(device)),
        lambda: create_block_mask(causal_same_document, document_ids.shape[0], None, q_len,
                                  kv_len, device=device))


@lru_cache(maxsize=8)
def _causal_block_mask(q_len: int, kv_len: int, device: str):
    from torch.nn.attention.flex_attention import create_block_mask

    offset = kv_len - q_len

    def causal(b, h, q_idx, kv_idx):
        return kv_idx <= q_idx + offset

    return create_block_mask(causal, None, None, q_len, kv_len, device=device)
