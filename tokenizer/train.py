"""Train a Llama-style sentencepiece BPE tokenizer from a corpus (`slm tokenizer train`).

The settings follow Llama 2 / TinyLlama's tokenizer: BPE, byte fallback (no text is ever
unk), digits split one per token, whitespace kept as is, ids unk=0, bos=1, eos=2, no pad
(-1) unless `<pad>` is a special token, special tokens from id 3 on. Two deliberate
differences, both so that transformers' LlamaTokenizer gives the same ids for every text:
no dummy-prefix space, and special tokens are control symbols (inserted by id, never parsed
out of text).

Training reads the corpus once, streaming, and keeps a seeded reservoir sample of at most
`max_sentences` sentences (a sentence is one non-empty line of a document, the unit
sentencepiece trains on), so memory is bounded and the sample depends only on the inputs
and the seed. The output directory is written under a temporary name and renamed at the end.
"""

from __future__ import annotations

import io
import json
import logging
import random
from collections import Counter
from pathlib import Path
from typing import Iterable, Iterator

from tokenizer import TokenizerError
from tokenizer.atomic import atomic_directory
from tokenizer.corpus import expand_inputs, iter_documents
from tokenizer.sentencepiece_tokenizer import MODEL_FILE, model_fingerprint

log = logging.getLogger(__name__)

META_FILE = "tokenizer_meta.json"
META_FORMAT_VERSION = 1
DEFAULT_MAX_SENTENCES = 2_000_000
DEFAULT_TRAIN_THREADS = 16
BYTE_PIECES = 256
BUILTIN_PIECES = ("<unk>", "<s>", "</s>")  # ids 0, 1, 2
PAD_PIECE = "<pad>"  # no pad id unless this is one of the special tokens
# Longer lines are cut into chunks of at most this many UTF-8 bytes (sentencepiece would
# silently drop them, and real corpora hold minified code and tables with very long lines).
MAX_SENTENCE_BYTES = 8192


def sentencepiece_options(vocab_size: int, special_tokens: tuple[str, ...],
                          num_threads: int) -> dict:
    """The sentencepiece trainer options; recorded verbatim in tokenizer_meta.json."""
    return dict(
        model_type="bpe",
        vocab_size=vocab_size,
        # Like Llama: byte fallback instead of unk, every digit its own token.
        byte_fallback=True,
        split_digits=True,
        character_coverage=0.99995,
        # No NFKC: it rewrites full-width letters, ligatures, superscripts and more, so
        # decode(encode(t)) != t, and transformers' Llama tokenizer applies no normalizer,
        # so ids would differ from ours. "identity" keeps the text byte for byte.
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        allow_whitespace_only_pieces=True,
        # No dummy-prefix "▁" before the text (Llama 2 adds one). transformers cannot
        # reproduce it: its Metaspace pre-tokenizer skips the prefix when the text already
        # starts with a space, sentencepiece does not, so " x" would get different ids.
        # Without it both agree on every text (LlamaTokenizer with add_prefix_space=False).
        add_dummy_prefix=False,
        split_by_whitespace=True,
        split_by_unicode_script=True,
        split_by_number=True,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        # Control symbols, not user-defined ones: a special token is never read from text
        # (web text containing "</s>" or "<|endoftext|>" stays text); insert it by id.
        # transformers is told the same with split_special_tokens=True.
        control_symbols=list(special_tokens),
        # We sample ourselves (seeded); sentencepiece takes every sentence it is given.
        input_sentence_size=0,
        shuffle_input_sentence=False,
        max_sentence_length=MAX_SENTENCE_BYTES,
        num_threads=num_threads,
        minloglevel=2,
    )


def document_sentences(document: str) -> Iterator[str]:
    """The training sentences of a document: its non-empty lines, long ones cut in chunks."""
    for line in document.split("\n"):
        if not line:
            continue
        if len(line) * 4 <= MAX_SENTENCE_BYTES or len(line.encode("utf-8")) <= MAX_SENTENCE_BYTES:
            yield line
            continue
        chunk, chunk_bytes = [], 0
        for char in line:
            char_bytes = len(char.encode("utf-8"))
            if chunk_bytes + char_bytes > MAX_SENTENCE_BYTES:
                yield "".join(chunk)
                chunk, chunk_bytes = [], 0
            chunk.append(char)
            chunk_bytes += char_bytes
        yield "".join(chunk)


def reservoir_sample(items: Iterable[str], size: int, seed: int) -> tuple[list[str], int]:
    """A uniform sample of at most `size` items in one pass (Vitter's algorithm R).

    Returns (sample, number of items seen); the sample depends only on the items and seed.
    """
    rng = random.Random(seed)
    sample: list[str] = []
    seen = 0
    for seen, item in enumerate(items, start=1):
        if seen <= size:
            sample.append(item)
        else:
            slot = rng.randrange(seen)
            if slot < size:
                sample[slot] = item
    return sample, seen


def check_special_tokens(vocab_size: int, special_tokens: tuple[str, ...]) -> None:
    for token in special_tokens:
        if not token or any(c.isspace() for c in token):
            raise TokenizerError(f"special token must be non-empty without whitespace: "
                                 f"{token!r} (--special-token)")
        if token in BUILTIN_PIECES:
            raise TokenizerError(f"{token} is built in as id {BUILTIN_PIECES.index(token)} "
                                 f"(--special-token)")
    if len(set(special_tokens)) != len(special_tokens):
        raise TokenizerError(f"duplicate special tokens {list(special_tokens)} (--special-token)")
    minimum = len(BUILTIN_PIECES) + BYTE_PIECES + len(special_tokens) + 1
    if vocab_size < minimum:
        raise TokenizerError(f"vocab size {vocab_size} is too small: {len(BUILTIN_PIECES)} "
                             f"builtin + {BYTE_PIECES} byte-fallback + {len(special_tokens)} "
                             f"special pieces need at least {minimum} (--vocab-size)")


def prepare_output(output: Path, overwrite: bool) -> None:
    if output.exists() and not output.is_dir():
        raise TokenizerError(f"output exists and is not a directory ({output})")
    if output.is_dir() and any(output.iterdir()) and not overwrite:
        raise TokenizerError(f"output directory is not empty; pass --overwrite to replace it "
                             f"({output})")


def train(inputs: Iterable[str | Path], vocab_size: int, output: str | Path, *,
          text_key: str = "text", max_sentences: int = DEFAULT_MAX_SENTENCES, seed: int = 0,
          special_tokens: Iterable[str] = (), overwrite: bool = False,
          skip_bad_lines: bool = False, num_threads: int | None = None,
          exclude_sets: Iterable[str] = (), progress: bool | None = None) -> Path:
    """Train a tokenizer on `inputs` (files, dirs, globs) and write it to the directory `output`.

    Writes `tokenizer.model` (sentencepiece), `tokenizer_meta.json` and, when transformers is
    installed, `tokenizer.json`, `tokenizer_config.json`, `special_tokens_map.json` so that
    `AutoTokenizer.from_pretrained(output)` gives the same ids. Special tokens get ids 3, 4, ...
    in the order given. Returns `output`. Raises TokenizerError (CorpusError for input
    problems) on a user mistake, leaving `output` untouched. `progress=None` shows a progress
    bar only on a terminal.
    """
    import sentencepiece

    special_tokens, exclude_sets = tuple(special_tokens), tuple(exclude_sets)
    output = Path(output)
    if max_sentences < 1:
        raise TokenizerError(f"max sentences must be at least 1, got {max_sentences} "
                             f"(--max-sentences)")
    if num_threads is not None and num_threads < 1:
        raise TokenizerError(f"threads must be at least 1, got {num_threads} (--threads)")
    check_special_tokens(vocab_size, special_tokens)
    prepare_output(output, overwrite)
    paths = expand_inputs(inputs)
    # sentencepiece stores num_threads in the model, so a fixed default keeps the model bytes
    # (and the fingerprint) the same on every machine.
    num_threads = num_threads or DEFAULT_TRAIN_THREADS

    input_stats = []

    def sentences() -> Iterator[str]:
        from tqdm import tqdm

        with tqdm(desc="reading corpus", unit=" docs", disable=None if progress is None
                  else not progress) as bar:
            for path in paths:
                skips: Counter = Counter()
                documents = 0
                for document in iter_documents(path, text_key=text_key, skips=skips,
                                               skip_bad_lines=skip_bad_lines,
                                               exclude_sets=exclude_sets):
                    documents += 1
                    bar.update()
                    yield from document_sentences(document)
                input_stats.append({"path": str(path), "bytes": path.stat().st_size,
                                    "documents": documents, "skipped": dict(sorted(skips.items()))})

    sample, sentences_seen = reservoir_sample(sentences(), max_sentences, seed)
    if not sample:
        raise TokenizerError(f"the inputs hold no text to train on ({', '.join(map(str, paths))})")

    with atomic_directory(output, replace=overwrite) as work_dir:
        options = sentencepiece_options(vocab_size, special_tokens, num_threads)
        sentencepiece.set_random_generator_seed(seed)
        try:
            # model_writer instead of model_prefix: the prefix (a temp path) would be stored
            # in the model and change its bytes, hence the fingerprint, from run to run.
            model_bytes = io.BytesIO()
            sentencepiece.SentencePieceTrainer.train(
                sentence_iterator=iter(sample), model_writer=model_bytes, **options)
        except RuntimeError as e:
            # e.g. "INTERNAL: src/trainer_interface.cc(744) [...] Vocabulary size too high
            # (1000). Please set it to a value <= 800."; the part after "] " is for users.
            reason = str(e).rsplit("] ", 1)[-1].split(" Increase vocab_size")[0]
            raise TokenizerError(f"sentencepiece cannot train a vocab of {vocab_size} on "
                                 f"{len(sample)} sentences: {reason} (--vocab-size)") from None
        (work_dir / MODEL_FILE).write_bytes(model_bytes.getvalue())
        skipped = sum((Counter(s["skipped"]) for s in input_stats), Counter())
        special_ids = {token: len(BUILTIN_PIECES) + i for i, token in enumerate(special_tokens)}
        meta = {
            "format_version": META_FORMAT_VERSION,
            "vocab_size": vocab_size,
            "unk_id": 0, "bos_id": 1, "eos_id": 2,
            # sentencepiece's pad_id() finds the piece "<pad>" when it is a special token.
            "pad_id": special_ids.get(PAD_PIECE),
            "special_tokens": special_ids,
            "model_file": MODEL_FILE,
            "fingerprint": model_fingerprint(model_bytes.getvalue()),
            "inputs": input_stats,
            "skipped": dict(sorted(skipped.items())),
            "sentences_seen": sentences_seen,
            "sentences_sampled": len(sample),
            "settings": {"text_key": text_key, "max_sentences": max_sentences, "seed": seed,
                         "skip_bad_lines": skip_bad_lines, "exclude_sets": list(exclude_sets),
                         "sentencepiece_version": sentencepiece.__version__,
                         "sentencepiece": {k: v for k, v in options.items()
                                           if k != "minloglevel"}},
        }
        from tokenizer.hf import write_hf_files

        meta["hf_files"] = write_hf_files(work_dir, special_tokens)
        (work_dir / META_FILE).write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
    if skipped:
        log.warning("skipped %d bad records: %s", sum(skipped.values()),
                    ", ".join(f"{n} {reason}" for reason, n in sorted(skipped.items())))
    return output
