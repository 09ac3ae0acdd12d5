"""Loaders for the standard benchmarks' local files, in the format their public releases ship.

Each produces the contexts and continuations of lm-evaluation-harness 0.4's task of the same
name (zero-shot; its ``lm_eval/tasks/<task>/*.yaml`` and ``utils.py``), so the numbers compare
with published tables: a multiple-choice continuation is ``" " + choice`` (lm-eval's
``target_delimiter``) and ``acc_norm`` divides by ``len(choice)`` as lm-eval does. Where a
benchmark ships in two layouts (the original release and the Hugging Face dataset) both are
read. ``HEADLINE`` is the metric TinyLlama's (and Pythia's) table reports for it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

from pretrain.errors import PretrainError
from pretrain.eval.items import (GREEDY, MULTIPLE_CHOICE, Item, Task, check_gold, field,
                                 generic_item, read_records, shared_context_item)

DELIMITER = " "  # lm-eval's target_delimiter between context and choice


def _choice_item(index: int, context: str, choices: list[str], gold: int, where: str) -> Item:
    for i, choice in enumerate(choices):
        if not isinstance(choice, str):
            raise PretrainError(f"choice {i} must be str, got {type(choice).__name__} ({where})")
    check_gold(gold, len(choices), where)
    return shared_context_item(index, context, [DELIMITER + c for c in choices], gold,
                               [len(c) for c in choices])


# ---- HellaSwag: rowanz/hellaswag hellaswag_val.jsonl (label int) or Rowan/hellaswag (label str)
def _hellaswag_text(text: str) -> str:
    """lm-eval's hellaswag ``preprocess``: drop WikiHow's bracketed artifacts."""
    text = text.strip()
    text = text.replace(" [title]", ". ")
    text = re.sub("\\[.*?\\]", "", text)
    return text.replace("  ", " ")


def hellaswag(index: int, where: str, record: dict) -> Item:
    ctx = field(record, "ctx_a", str, where) + " " + field(record, "ctx_b", str, where).capitalize()
    query = _hellaswag_text(field(record, "activity_label", str, where) + ": " + ctx)
    endings = field(record, "endings", list, where)
    label = field(record, "label", (int, str), where)
    try:
        gold = int(label)
    except ValueError:
        raise PretrainError(f"'label' must be an integer, got {label!r} ({where})") from None
    if any(not isinstance(e, str) for e in endings):
        raise PretrainError(f"'endings' must be strings ({where})")
    return _choice_item(index, query, [_hellaswag_text(e) for e in endings], gold, where)


# ---- ARC and OpenBookQA: AI2's release {"question": {"stem", "choices": [{"text","label"}]}}
#      or the HF layout {"question"/"question_stem": str, "choices": {"text": [], "label": []}}
def _ai2_question(record: dict, stem_key: str, where: str) -> tuple[str, list[str], list[str]]:
    question = record.get("question")
    if isinstance(question, dict):  # the original release
        stem = field(question, "stem", str, where)
        choices = field(question, "choices", list, where)
        if any(not isinstance(c, dict) for c in choices):
            raise PretrainError(f"'question.choices' must be objects ({where})")
        texts = [field(c, "text", str, where) for c in choices]
        labels = [str(field(c, "label", (str, int), where)) for c in choices]
        return stem, texts, labels
    stem = field(record, stem_key, str, where)
    choices = field(record, "choices", dict, where)
    texts, labels = field(choices, "text", list, where), field(choices, "label", list, where)
    if len(texts) != len(labels):
        raise PretrainError(f"'choices' has {len(texts)} texts but {len(labels)} labels ({where})")
    return stem, texts, [str(label) for label in labels]


def _answer_index(labels: list[str], answer: str, where: str) -> int:
    if answer not in labels:
        raise PretrainError(f"answerKey {answer!r} is not one of the labels {labels} ({where})")
    return labels.index(answer)


def arc(index: int, where: str, record: dict) -> Item:
    stem, texts, labels = _ai2_question(record, "question", where)
    gold = _answer_index(labels, str(field(record, "answerKey", (str, int), where)), where)
    return _choice_item(index, f"Question: {stem}\nAnswer:", texts, gold, where)


def openbookqa(index: int, where: str, record: dict) -> Item:
    stem, texts, labels = _ai2_question(record, "question_stem", where)
    answer = str(field(record, "answerKey", (str, int), where)).lstrip()
    return _choice_item(index, stem, texts, _answer_index(labels, answer, where), where)


# ---- PIQA: valid.jsonl {"goal","sol1","sol2"} + valid-labels.lst beside it, or "label" inline
def piqa_labels(path: Path) -> list[int] | None:
    """The labels of PIQA's release (``<stem>-labels.lst``, one 0/1 per line), if present."""
    labels_path = path.with_name(f"{path.stem}-labels.lst")
    if not labels_path.is_file():
        return None
    labels = []
    for number, line in enumerate(labels_path.read_text().splitlines()):
        if line.strip() not in ("0", "1"):
            raise PretrainError(f"a PIQA label must be 0 or 1, got {line!r} ({labels_path}:{number + 1})")
        labels.append(int(line))
    return labels


def piqa(index: int, where: str, record: dict, labels: list[int] | None = None) -> Item:
    goal = field(record, "goal", str, where)
    solutions = [field(record, "sol1", str, where), field(record, "sol2", str, where)]
    if "label" in record:
        gold = field(record, "label", int, where)
    elif labels is not None and index < len(labels):
        gold = labels[index]
    else:
        raise PretrainError(f"no label: neither a 'label' key nor a line in the "
                            f"-labels.lst file beside it ({where})")
    return _choice_item(index, f"Question: {goal}\nAnswer:", solutions, gold, where)


# ---- WinoGrande: dev.jsonl {"sentence" with "_", "option1", "option2", "answer": "1"|"2"}
def winogrande(index: int, where: str, record: dict) -> Item:
    """Partial scoring: each option fills the blank in its own context, and the shared rest of
    the sentence is the continuation (lm-eval's multiple-input task)."""
    sentence = field(record, "sentence", str, where)
    options = [field(record, "option1", str, where), field(record, "option2", str, where)]
    answer = str(field(record, "answer", (str, int), where))
    if "_" not in sentence:
        raise PretrainError(f"'sentence' has no blank '_' ({where})")
    if answer not in ("1", "2"):
        raise PretrainError(f"'answer' must be '1' or '2', got {answer!r} ({where})")
    blank = sentence.index("_")
    contexts = tuple(sentence[:blank] + option for option in options)
    continuation = DELIMITER + sentence[blank + 1:].strip()
    # lm-eval's acc_norm would divide by the length of its "choices", here the contexts.
    return Item(index, contexts, (continuation,) * 2, int(answer) - 1,
                tuple(len(c) for c in contexts))


# ---- BoolQ: google's dev.jsonl {"question","passage","answer": bool} or super_glue's "label"
def boolq(index: int, where: str, record: dict) -> Item:
    passage, question = field(record, "passage", str, where), field(record, "question", str, where)
    gold = int(field(record, "answer", bool, where)) if "answer" in record else field(record, "label", int, where)
    return _choice_item(index, f"{passage}\nQuestion: {question}?\nAnswer:", ["no", "yes"], gold, where)


# ---- SciQ: valid.json (an array) or jsonl of {"question","support","correct_answer","distractor1..3"}
def sciq(index: int, where: str, record: dict) -> Item:
    support, question = field(record, "support", str, where), field(record, "question", str, where)
    choices = [field(record, key, str, where)
               for key in ("distractor1", "distractor2", "distractor3", "correct_answer")]
    return _choice_item(index, f"{support.lstrip()}\nQuestion: {question}\nAnswer:", choices, 3, where)


# ---- LAMBADA: lambada_test.jsonl {"text"}: the last word after the rest, scored greedily
def lambada(index: int, where: str, record: dict) -> Item:
    words = field(record, "text", str, where).split(" ")
    continuation = " " + words[-1]
    return shared_context_item(index, " ".join(words[:-1]), [continuation], 0)


Loader = Callable[[int, str, dict], Item]
BENCHMARKS: dict[str, tuple[Loader, str]] = {
    "hellaswag": (hellaswag, MULTIPLE_CHOICE),
    "arc_easy": (arc, MULTIPLE_CHOICE),
    "arc_challenge": (arc, MULTIPLE_CHOICE),
    "piqa": (piqa, MULTIPLE_CHOICE),
    "winogrande": (winogrande, MULTIPLE_CHOICE),
    "boolq": (boolq, MULTIPLE_CHOICE),
    "openbookqa": (openbookqa, MULTIPLE_CHOICE),
    "sciq": (sciq, MULTIPLE_CHOICE),
    "lambada_openai": (lambada, GREEDY),
    "lambada_standard": (lambada, GREEDY),
    "lambada": (lambada, GREEDY),
}
HEADLINE = {"hellaswag": "acc_norm", "openbookqa": "acc_norm", "winogrande": "acc",
            "arc_challenge": "acc_norm", "arc_easy": "acc_norm", "boolq": "acc", "piqa": "acc_norm",
            "sciq": "acc_norm", "lambada_openai": "acc", "lambada_standard": "acc", "lambada": "acc"}


def headline_metric(name: str) -> str:
    """The metric to show for task ``name`` in plots and summaries (generic tasks: acc)."""
    return HEADLINE.get(name, "acc")


def load_task(name: str, path: str | Path, limit: int | None = None) -> Task:
    """Task ``name`` from ``path``: a benchmark's public format if ``name`` is in BENCHMARKS,
    else the generic JSONL format. Only the first ``limit`` items are read when given.
    PretrainError (what, file:line) for anything malformed; an empty file is an error too."""
    path = Path(path)
    loader, kind = BENCHMARKS.get(name, (generic_item, MULTIPLE_CHOICE))
    extra = {"labels": piqa_labels(path)} if loader is piqa else {}
    items = []
    for index, where, record in read_records(path):
        if limit is not None and len(items) >= limit:
            break
        items.append(loader(index, where, record, **extra))
    if not items:
        raise PretrainError(f"no items in task {name!r} ({path})")
    return Task(name, path, tuple(items), kind)
