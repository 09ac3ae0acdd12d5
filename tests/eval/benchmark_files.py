"""Small task files in each benchmark's public release format, and the same records in the
layout of the Hugging Face datasets that lm-evaluation-harness's task configs read.

The texts are chosen to exercise every preprocessing rule: WikiHow brackets and ctx_b's
capitalisation (HellaSwag), numeric answer keys and a padded key (ARC, OpenBookQA), a context
with trailing spaces, SciQ's leading whitespace in `support`, non-ASCII text, LAMBADA's
multi-space split.
"""

from __future__ import annotations

import json
from pathlib import Path

HELLASWAG = [
    {"ind": 4, "activity_label": "Removing ice from car", "ctx_a": "Then, the man writes over the snow covering the window of a car, and a woman wearing winter clothes smiles.",
     "ctx_b": "then", "ctx": "...", "split": "val", "split_type": "indomain", "label": 3,
     "endings": [", the man adds wax to the windshield and cuts it.", ", a person board a ski lift, while two men supporting the head of the person wearing winter clothes snow as the we girls sled.", ", the man puts on a christmas coat, knitted with netting.", ", the man continues removing the snow on his car."], "source_id": "v_-1IBHYS3L-Y"},
    {"ind": 9, "activity_label": "Home and Garden", "ctx_a": "[header] How to grow tomatoes [title] Choose a sunny spot. [step] Tomatoes need  light.",
     "ctx_b": "WATER them", "ctx": "...", "split": "val", "split_type": "zeroshot", "label": 0,
     "endings": ["every [substeps] morning before the heat.", "with café au lait.", "never.", "only in winter [title] when it snows."], "source_id": "wikihow~1"},
    {"ind": 12, "activity_label": "Playing piano", "ctx_a": "A girl sits at a piano.", "ctx_b": "she",
     "ctx": "...", "split": "val", "split_type": "indomain", "label": 1,
     "endings": ["eats the keys.", "plays a slow song.", "flies away.", "paints the piano red."], "source_id": "v_x"},
]

ARC = [
    {"id": "Mercury_1", "question": {"stem": "Which form of energy is stored in a stretched rubber band?",
     "choices": [{"text": "elastic potential energy", "label": "A"}, {"text": "sound energy", "label": "B"},
                 {"text": "light energy", "label": "C"}, {"text": "heat energy", "label": "D"}]}, "answerKey": "A"},
    {"id": "NYSEDREGENTS_2", "question": {"stem": "Which tool is best to measure the mass of a rock?",
     "choices": [{"text": "a ruler", "label": "1"}, {"text": "a balance", "label": "2"},
                 {"text": "a thermometer", "label": "3"}]}, "answerKey": "2"},
    {"id": "Mercury_3", "question": {"stem": "What do plants need for photosynthesis? ",
     "choices": [{"text": "sunlight", "label": "A"}, {"text": "sand", "label": "B"},
                 {"text": "salt", "label": "C"}, {"text": "smoke", "label": "D"}]}, "answerKey": "A"},
]

OPENBOOKQA = [
    {"id": "7-980", "question": {"stem": "The sun is responsible for",
     "choices": [{"text": "puppies learning new tricks", "label": "A"}, {"text": "children growing up and getting old", "label": "B"},
                 {"text": "flowers wilting in a vase", "label": "C"}, {"text": "plants sprouting, blooming and wilting", "label": "D"}]},
     "answerKey": "D"},
    {"id": "7-584", "question": {"stem": "When standing miles away from Mount Rushmore",
     "choices": [{"text": "the mountains seem very close", "label": "A"}, {"text": "the mountains are boring", "label": "B"},
                 {"text": "the mountains look the same as from up close", "label": "C"}, {"text": "the mountains seem smaller than in photographs", "label": "D"}]},
     "answerKey": " D"},
]

PIQA = [
    {"id": "a", "goal": "How do I ready a guinea pig cage for it's new occupants?",
     "sol1": "Provide the guinea pig with a cage full of a few inches of bedding made of ripped paper strips, you will also need to supply it with a water bottle and a food dish.",
     "sol2": "Provide the guinea pig with a cage full of a few inches of bedding made of ripped jeans material, you will also need to supply it with a water bottle and a food dish."},
    {"id": "b", "goal": "To clean a  cast iron pan ", "sol1": "scrub it with salt and oil.", "sol2": "soak it in water overnight."},
]
PIQA_LABELS = [0, 0]

WINOGRANDE = [
    {"qID": "1", "sentence": "Sarah was a much better surgeon than Maria so _ always got the harder cases.",
     "option1": "Sarah", "option2": "Maria", "answer": "1"},
    {"qID": "2", "sentence": "The trophy doesn't fit into the brown suitcase because the _ is too large.",
     "option1": "trophy", "option2": "suitcase", "answer": "1"},
    {"qID": "3", "sentence": "Ian volunteered to eat Dennis's menudo after already having a bowl because _ despised eating intestine.",
     "option1": "Ian", "option2": "Dennis", "answer": "2"},
]

BOOLQ = [
    {"question": "do iran and afghanistan speak the same language", "title": "Persian language",
     "answer": True, "passage": "Persian (/ˈpɜːrʒən, -ʃən/), also known by its endonym Farsi, is one of the Western Iranian languages."},
    {"question": "is the sun a planet", "title": "Sun", "answer": False,
     "passage": "The Sun is the star at the center of the Solar System.  "},
]

SCIQ = [
    {"question": "What type of organism is commonly used in preparation of foods such as cheese and yogurt?",
     "distractor3": "viruses", "distractor1": "protozoa", "distractor2": "gymnosperms",
     "correct_answer": "mesophilic organisms", "support": "  Mesophiles grow best in moderate temperature."},
    {"question": "What is the least dangerous radioactive decay?", "distractor3": "zeta decay",
     "distractor1": "beta decay", "distractor2": "gamma decay", "correct_answer": "alpha decay",
     "support": "All radioactive decay is dangerous to living things, but alpha decay is the least dangerous."},
]

LAMBADA = [
    {"text": "In my palm is a clear stone, and inside it is a small ivory statuette. A guardian angel.\n\n\"Figured if you're going to be out at night getting hit by cars, you might as well have some backup.\"\n\nI look at him, feeling stunned. Like this is some sort of sign. But as I stare at Harlin, his mouth curved in a confident grin, I don't care about signs"},
    {"text": "Give me a minute to change and I'll meet you at the docks.\" She'd forced those words through her teeth.  \"No need to change. We won't be that long.\" Shane gripped her arm and started leading her to the dock"},
]


def _jsonl(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def _ai2_hf(record: dict, stem_key: str) -> dict:
    choices = record["question"]["choices"]
    return {"id": record["id"], stem_key: record["question"]["stem"], "answerKey": record["answerKey"],
            "choices": {"text": [c["text"] for c in choices], "label": [c["label"] for c in choices]}}


def write_public(root: Path) -> dict[str, Path]:
    """{benchmark name: file} in each public release's own format."""
    piqa = _jsonl(root / "piqa" / "valid.jsonl", PIQA)
    (root / "piqa" / "valid-labels.lst").write_text("".join(f"{label}\n" for label in PIQA_LABELS))
    sciq = root / "sciq" / "valid.json"
    sciq.parent.mkdir(parents=True, exist_ok=True)
    sciq.write_text(json.dumps(SCIQ, indent=1, ensure_ascii=False), encoding="utf-8")
    return {
        "hellaswag": _jsonl(root / "hellaswag_val.jsonl", HELLASWAG),
        "arc_easy": _jsonl(root / "ARC-Easy-Dev.jsonl", ARC),
        "arc_challenge": _jsonl(root / "ARC-Challenge-Dev.jsonl", ARC[::-1]),
        "openbookqa": _jsonl(root / "openbookqa" / "dev.jsonl", OPENBOOKQA),
        "piqa": piqa,
        "winogrande": _jsonl(root / "winogrande" / "dev.jsonl", WINOGRANDE),
        "boolq": _jsonl(root / "boolq" / "dev.jsonl", BOOLQ),
        "sciq": sciq,
        "lambada_openai": _jsonl(root / "lambada_test.jsonl", LAMBADA),
        "lambada_standard": _jsonl(root / "lambada_standard.jsonl", LAMBADA[::-1]),
    }


def write_hf_layout(root: Path) -> dict[str, Path]:
    """The same records as jsonl in the Hugging Face datasets' layout (what lm-eval reads)."""
    return {
        "hellaswag": _jsonl(root / "hellaswag.jsonl", [{**r, "label": str(r["label"])} for r in HELLASWAG]),
        "arc_easy": _jsonl(root / "arc_easy.jsonl", [_ai2_hf(r, "question") for r in ARC]),
        "arc_challenge": _jsonl(root / "arc_challenge.jsonl", [_ai2_hf(r, "question") for r in ARC[::-1]]),
        "openbookqa": _jsonl(root / "openbookqa.jsonl", [_ai2_hf(r, "question_stem") for r in OPENBOOKQA]),
        "piqa": _jsonl(root / "piqa.jsonl", [{**r, "label": label} for r, label in zip(PIQA, PIQA_LABELS)]),
        "winogrande": _jsonl(root / "winogrande.jsonl", WINOGRANDE),
        "boolq": _jsonl(root / "boolq.jsonl", [{"question": r["question"], "passage": r["passage"],
                                                "idx": i, "label": int(r["answer"])} for i, r in enumerate(BOOLQ)]),
        "sciq": _jsonl(root / "sciq.jsonl", SCIQ),
        "lambada_openai": _jsonl(root / "lambada_openai.jsonl", LAMBADA),
        "lambada_standard": _jsonl(root / "lambada_standard.jsonl", LAMBADA[::-1]),
    }


def lm_eval_task(name: str, data_file: Path, cache_dir: Path):
    """lm-evaluation-harness's own task ``name`` (its installed YAML, functions and all) reading
    ``data_file`` instead of downloading; built without indexing every task (seconds faster)."""
    import lm_eval
    from lm_eval.api.task import ConfigurableTask
    from lm_eval.tasks._yaml_loader import load_yaml

    tasks = Path(lm_eval.__file__).parent / "tasks"
    yaml_file = {"hellaswag": "hellaswag/hellaswag.yaml", "arc_easy": "arc/arc_easy.yaml",
                 "arc_challenge": "arc/arc_challenge.yaml", "openbookqa": "openbookqa/openbookqa.yaml",
                 "piqa": "piqa/piqa.yaml", "winogrande": "winogrande/default.yaml",
                 "boolq": "super_glue/boolq/default.yaml", "sciq": "sciq/sciq.yaml",
                 "lambada_openai": "lambada/lambada_openai.yaml",
                 "lambada_standard": "lambada/lambada_standard.yaml"}[name]
    config = load_yaml(tasks / yaml_file)
    config.pop("tag", None)
    config.update(dataset_path="json", dataset_name=None, training_split=None, fewshot_split=None,
                  validation_split=None, test_split="test",
                  dataset_kwargs={"data_files": {"test": str(data_file)}, "cache_dir": str(cache_dir)})
    return ConfigurableTask(config=config)


def lm_eval_requests(task) -> list[tuple[dict, list]]:
    """(doc, [Instance per choice]) of every doc, zero-shot, as lm-eval's evaluator builds them."""
    out = []
    for i, doc in enumerate(task.test_docs()):
        context = task.fewshot_context(doc, 0)
        instances = task.construct_requests(doc, context, metadata=(task.config.task, i, 1))
        out.append((doc, instances if isinstance(instances, list) else [instances]))
    return out
