"""`Tokenizer`: a loaded sentencepiece model, and `load(path)` to get one."""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path

from tokenizer import TokenizerError

MODEL_FILE = "tokenizer.model"


def model_fingerprint(model_bytes: bytes) -> str:
    """A tokenizer's identity: the sha256 hex of its sentencepiece model file."""
    return hashlib.sha256(model_bytes).hexdigest()


def load(path: str | Path, *, num_threads: int | None = None) -> "Tokenizer":
    """Load a tokenizer from our training DIR, an HF Llama-family tokenizer dir (anything
    holding `tokenizer.model`), or a bare sentencepiece `.model` file.

    `num_threads` is used by `encode_batch` (default: all cores). Raises TokenizerError naming
    the path when it is missing, holds no `tokenizer.model`, or is not a sentencepiece model.
    """
    path = Path(path)
    if path.is_dir():
        model_file = path / MODEL_FILE
        if not model_file.is_file():
            raise TokenizerError(f"no {MODEL_FILE} in the tokenizer directory; only "
                                 f"sentencepiece tokenizers are supported ({path})")
    elif path.is_file():
        model_file = path
    else:
        raise TokenizerError(f"no such tokenizer file or directory ({path})")
    return Tokenizer(model_file, num_threads=num_threads)


class Tokenizer:
    """Encode and decode with a sentencepiece model; ids as Python lists of ints.

    `vocab_size` counts every id (specials and byte pieces included); `pad_id` is the id of
    the piece `<pad>` (trained with `--special-token '<pad>'`), else None; `fingerprint` is
    the sha256 hex of the model file, the identity that prepared data records.

    Round trip: `decode(encode(t)) == t` for any text without the character "▁" (U+2581),
    which sentencepiece uses for the space and therefore decodes as " ".
    """

    def __init__(self, model_file: str | Path, *, num_threads: int | None = None):
        import sentencepiece

        self.model_file = Path(model_file)
        try:
            model_bytes = self.model_file.read_bytes()
        except OSError as e:
            raise TokenizerError(f"cannot read tokenizer model: {e.strerror} "
                                 f"({self.model_file})") from None
        self._sp = sentencepiece.SentencePieceProcessor()
        try:
            self._sp.load_from_serialized_proto(model_bytes)
        except (RuntimeError, OSError) as e:
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise TokenizerError(f"not a sentencepiece model: {reason} "
                                 f"({self.model_file})") from None
        self.fingerprint = model_fingerprint(model_bytes)
        self.num_threads = num_threads or os.cpu_count() or 1

    @property
    def vocab_size(self) -> int:
        return self._sp.get_piece_size()

    @property
    def bos_id(self) -> int:
        return self._sp.bos_id()

    @property
    def eos_id(self) -> int:
        return self._sp.eos_id()

    @property
    def unk_id(self) -> int:
        return self._sp.unk_id()

    @property
    def pad_id(self) -> int | None:
        pad = self._sp.pad_id()
        return pad if pad >= 0 else None

    @functools.cached_property
    def special_tokens(self) -> dict[str, int]:
        """Special pieces other than bos/eos (e.g. `<|sep|>`, `<pad>`) and their ids: control
        symbols, which are never produced from text; put them in by id."""
        sp = self._sp
        builtin = {self.bos_id, self.eos_id}
        return {sp.id_to_piece(i): i for i in range(self.vocab_size)
                if sp.is_control(i) and i not in builtin}

    def encode(self, text: str, bos: bool = False, eos: bool = False) -> list[int]:
        """Ids of `text`, with BOS first / EOS last when asked."""
        return self._sp.encode(text, add_bos=bos, add_eos=eos)

    def encode_batch(self, texts: list[str], bos: bool = False,
                     eos: bool = False) -> list[list[int]]:
        """`encode` for many texts at once on `num_threads` threads (sentencepiece's batch API)."""
        if not isinstance(texts, list):
            texts = list(texts)
        return self._sp.encode(texts, add_bos=bos, add_eos=eos, num_threads=self.num_threads)

    def decode(self, ids: list[int]) -> str:
        return self._sp.decode(list(ids))

    def id_to_piece(self, piece_id: int) -> str:
        return self._sp.id_to_piece(piece_id)

    def token_bytes(self) -> list[int]:
        """UTF-8 bytes of text each id stands for: a byte-fallback piece 1, a control or unknown
        id 0, any other piece its text (``▁`` = one space). For text encoded without a dummy
        prefix (ours), the ids' sum is the text's length in bytes: the denominator of bits per
        byte, which compares models with different tokenizers."""
        sp = self._sp
        return [0 if sp.is_control(i) or sp.is_unknown(i) else 1 if sp.is_byte(i)
                else len(sp.id_to_piece(i).replace("\u2581", " ").encode("utf-8"))
                for i in range(sp.get_piece_size())]

    def __repr__(self) -> str:
        return (f"Tokenizer({str(self.model_file)!r}, vocab_size={self.vocab_size}, "
                f"fingerprint={self.fingerprint[:12]})")
