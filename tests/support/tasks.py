"""The two small local lm-eval tasks the integration tests score, and the
fitness settings for each. The fixtures that write them once per session are
in tests/integration/conftest.py.

- `tiny_sentiment` (with `tiny_mood`, the tag `tiny_tag`, the group
  `tiny_group` and the held-out `tiny_heldout`): two answers, one token each.
- `tiny_choices`: one-token and multi-token choices, two or three per
  document, and one context longer than the tiny models' 128 positions.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from optimize import FitnessConfig

SENTIMENT_TEXTS = [
    ("I love it", 0),
    ("I hate it", 1),
    ("Great day", 0),
    ("Awful day", 1),
    ("So happy", 0),
    ("So sad", 1),
    ("Nice food", 0),
    ("Bad food", 1),
]

SENTIMENT_HELDOUT = [
    ("What a lovely gift", 0),
    ("The bus was late again", 1),
    ("Best film this year", 0),
    ("My phone broke", 1),
    ("Such a kind nurse", 0),
    ("Cold soup, rude staff", 1),
]

_SENTIMENT_YAML = """\
task: tiny_sentiment
dataset_path: json
dataset_kwargs:
  data_files:
    train: {folder}/train.jsonl
    test: {folder}/test.jsonl
training_split: train
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{text}}}} Sentiment:"
target_delimiter: " "
doc_to_choice: ["positive", "negative"]
doc_to_target: label
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""


def write_sentiment_task(folder: Path) -> str:
    """A two-choice task of 8 short documents (and 4 few-shot examples)."""
    rows = [json.dumps({"text": t, "label": label}) for t, label in SENTIMENT_TEXTS]
    (folder / "test.jsonl").write_text("\n".join(rows) + "\n")
    train = [json.dumps({"text": t + "!", "label": label}) for t, label in SENTIMENT_TEXTS[:4]]
    (folder / "train.jsonl").write_text("\n".join(train) + "\n")
    (folder / "tiny.yaml").write_text(_SENTIMENT_YAML.format(folder=folder))
    # a second task (other prompt, tagged) and a group of both
    yaml = _SENTIMENT_YAML.format(folder=folder)
    other = yaml.replace("task: tiny_sentiment", "task: tiny_mood")
    other = other.replace("Sentiment:", "Mood:") + "tag: tiny_tag\n"
    (folder / "mood.yaml").write_text(other)
    (folder / "group.yaml").write_text(
        "group: tiny_group\ntask: [tiny_sentiment, tiny_mood]\n"
        "aggregate_metric_list:\n  - metric: acc\n    weight_by_size: true\n"
    )
    # held-out documents: the same prompt over texts the search never scores
    held = [json.dumps({"text": t, "label": label}) for t, label in SENTIMENT_HELDOUT]
    (folder / "heldout.jsonl").write_text("\n".join(held) + "\n")
    (folder / "heldout.yaml").write_text(
        yaml.replace("task: tiny_sentiment", "task: tiny_heldout")
        .replace("test.jsonl", "heldout.jsonl")
    )
    return str(folder)


def write_forty_sentiment_task(folder: Path) -> str:
    """`tiny_sentiment` over 40 documents: enough for a search part worth
    racing and for a split into search, confirmation and held-out parts."""
    words = ["good", "bad", "fine", "awful", "great", "sad", "nice", "grim"]
    rows = [
        json.dumps({"text": f"{words[i % 8]} thing number {i}", "label": i % 2})
        for i in range(40)
    ]
    (folder / "test.jsonl").write_text("\n".join(rows) + "\n")
    (folder / "train.jsonl").write_text("\n".join(rows[:4]) + "\n")
    (folder / "tiny.yaml").write_text(_SENTIMENT_YAML.format(folder=folder))
    return str(folder)


def sentiment_run_argv(model: Path, vectors: Path, folder: str) -> list[str]:
    """`python -m optimize` arguments of a small seeded search on `tiny_sentiment`
    (3 particles x 2 iterations over layers 1-3, whole alphas)."""
    return [
        *("--model", str(model), "--vectors", str(vectors), "--quiet"),
        *("--include-path", folder, "--task", "tiny_sentiment", "--limit", "6"),
        *("--particles", "3", "--iterations", "2", "--layer-min", "1", "--layer-max", "3"),
        *("--unit", "alpha", "--alpha-min", "-30", "--alpha-max", "30"),
        *("--alpha-decimals", "0", "--seed", "3"),
    ]


def sentiment_fitness(folder: str, **changes: Any) -> FitnessConfig:
    """`tiny_sentiment` on its first 6 documents, or as `changes` say."""
    settings = {"task": "tiny_sentiment", "include_path": folder, "limit": 6}
    return FitnessConfig(**(settings | changes))


LONG_CONTEXT = " ".join(["the weather was mild and the people walked along the river"] * 14)
CHOICES_DOCS = [
    {"text": "I love it", "choices": ["good", "bad"], "label": 0},
    {"text": "I hate it", "choices": ["good", "bad"], "label": 1},
    {"text": "A fine day", "choices": ["very good indeed", "quite bad", "so-so"], "label": 0},
    {"text": "Rain again", "choices": ["lovely weather today", "awful"], "label": 1},
    {"text": LONG_CONTEXT, "choices": ["calm", "a storm was coming"], "label": 0},
    {"text": "So happy", "choices": ["good", "bad"], "label": 0},
    {"text": "Cold soup", "choices": ["tasty", "cold and bland soup", "fine"], "label": 1},
]
_CHOICES_YAML = """\
task: tiny_choices
dataset_path: json
dataset_kwargs:
  data_files:
    test: {folder}/test.jsonl
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{text}}}} Verdict:"
target_delimiter: " "
doc_to_choice: "{{{{choices}}}}"
doc_to_target: label
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""


def write_choices_task(folder: Path) -> str:
    """Seven documents: one-token and multi-token choices, two to three each,
    and one context longer than the tiny models' 128 positions (truncated)."""
    (folder / "test.jsonl").write_text("\n".join(json.dumps(d) for d in CHOICES_DOCS) + "\n")
    (folder / "task.yaml").write_text(_CHOICES_YAML.format(folder=folder))
    return str(folder)


def choices_fitness(folder: str, **changes: Any) -> FitnessConfig:
    """`tiny_choices`, every document, or as `changes` say."""
    settings = {"task": "tiny_choices", "include_path": folder, "limit": None}
    return FitnessConfig(**(settings | changes))
