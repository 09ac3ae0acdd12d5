"""Hugging Face files next to the sentencepiece model, so `AutoTokenizer.from_pretrained(DIR)`
loads our tokenizer as a `LlamaTokenizer` and produces the same ids.

`tokenizer.json` is built with the `tokenizers` library exactly as transformers builds a
non-legacy Llama tokenizer from a sentencepiece model (its `LlamaConverter` /
`LlamaTokenizer`): a byte-fallback BPE over the sentencepiece vocabulary, merges derived
from the piece order (`transformers.tokenization_utils_base.generate_merges`), no normalizer,
`Metaspace(prepend_scheme="never", split=False)` (spaces become "▁", no dummy prefix: our
models have none, see tokenizer/train.py) and the matching decoder. Special tokens are not
matched in text (`split_special_tokens: true`), as sentencepiece's control symbols are not.
Needs the optional extra `hf` (tokenizers); without it training still writes the
sentencepiece model and one warning line says what was skipped.

The raw `tokenizers.Tokenizer.from_file("tokenizer.json")` (without transformers) does match
special tokens in text: `split_special_tokens` lives in tokenizer_config.json, since
tokenizers does not serialise it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)

HF_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
UNK, BOS, EOS, PAD = "<unk>", "<s>", "</s>", "<pad>"


def bpe_merges(vocab: dict[str, int], skip_pieces: set[str]) -> list[tuple[str, str]]:
    """BPE merges reproducing sentencepiece's segmentation: every split of a piece into two
    pieces of the vocab, ranked by the merged piece's id (sentencepiece BPE ids follow merge
    order), ties by the parts' ids. The same rule as transformers' `generate_merges`."""
    merges = []
    for piece, piece_id in vocab.items():
        if piece in skip_pieces:
            continue
        for cut in range(1, len(piece)):
            left, right = piece[:cut], piece[cut:]
            if left in vocab and right in vocab and not {left, right} & skip_pieces:
                merges.append((piece_id, len(left), len(right), vocab[left], vocab[right],
                               left, right))
    merges.sort(key=lambda m: (m[0], m[1], m[2], m[3], m[4]))
    return [(left, right) for *_, left, right in merges]


def build_hf_tokenizer(model_file: str | Path, special_tokens: tuple[str, ...]):
    """A `tokenizers.Tokenizer` equivalent to the sentencepiece model (see module docstring)."""
    import sentencepiece
    from tokenizers import AddedToken, Tokenizer, decoders, pre_tokenizers, processors
    from tokenizers.models import BPE

    sp = sentencepiece.SentencePieceProcessor(model_file=str(model_file))
    vocab = {sp.id_to_piece(i): i for i in range(sp.get_piece_size())}
    not_mergeable = {sp.id_to_piece(i) for i in range(sp.get_piece_size())
                     if sp.is_control(i) or sp.is_unknown(i) or sp.is_byte(i)}
    not_mergeable.update(special_tokens)
    hf = Tokenizer(BPE(vocab=vocab, merges=bpe_merges(vocab, not_mergeable), unk_token=UNK,
                       fuse_unk=True, byte_fallback=True, dropout=None))
    hf.normalizer = None
    hf.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never",
                                                split=False)
    hf.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(),
                                    decoders.Fuse()])
    # BOS added by the post-processor, as LlamaTokenizer(add_bos_token=True) does.
    hf.post_processor = processors.TemplateProcessing(
        single=f"{BOS}:0 $A:0", pair=f"{BOS}:0 $A:0 {BOS}:1 $B:1",
        special_tokens=[(BOS, sp.bos_id())])
    hf.add_special_tokens([AddedToken(token, normalized=False, special=True)
                           for token in (UNK, BOS, EOS, *special_tokens)])
    return hf


def tokenizer_config(special_tokens: tuple[str, ...]) -> dict:
    """`tokenizer_config.json`: LlamaTokenizer, BOS added, EOS not, no prefix space, special
    tokens only by id."""
    added = {str(i): {"content": token, "lstrip": False, "normalized": False, "rstrip": False,
                      "single_word": False, "special": True}
             for i, token in enumerate((UNK, BOS, EOS, *special_tokens))}
    return {
        "tokenizer_class": "LlamaTokenizer",
        "add_bos_token": True,
        "add_eos_token": False,
        "legacy": False,
        "add_prefix_space": False,
        "split_special_tokens": True,
        "bos_token": BOS,
        "eos_token": EOS,
        "unk_token": UNK,
        "pad_token": PAD if PAD in special_tokens else None,
        "additional_special_tokens": list(special_tokens),
        "added_tokens_decoder": added,
        "clean_up_tokenization_spaces": False,
        "sp_model_kwargs": {},
        "use_default_system_prompt": False,
    }


def special_tokens_map(special_tokens: tuple[str, ...]) -> dict:
    tokens = {"bos_token": BOS, "eos_token": EOS, "unk_token": UNK,
              "additional_special_tokens": list(special_tokens)}
    return {**tokens, "pad_token": PAD} if PAD in special_tokens else tokens


def write_hf_files(directory: str | Path, special_tokens: tuple[str, ...] = ()) -> list[str]:
    """Write the HF files for `directory/tokenizer.model`; returns the names written ([] and
    one warning when the `tokenizers` package is missing)."""
    directory = Path(directory)
    try:
        import tokenizers  # noqa: F401
    except ImportError:
        log.warning("tokenizers is not installed: skipped %s (AutoTokenizer support); "
                    "install them with: pip install 'slm-pretrain[hf]'", ", ".join(HF_FILES))
        return []
    build_hf_tokenizer(directory / "tokenizer.model", special_tokens).save(
        str(directory / "tokenizer.json"))
    for name, content in (("tokenizer_config.json", tokenizer_config(special_tokens)),
                          ("special_tokens_map.json", special_tokens_map(special_tokens))):
        (directory / name).write_text(json.dumps(content, indent=2, ensure_ascii=False) + "\n")
    return list(HF_FILES)
