"""`task_pairs`: a direction from a multiple-choice task's own documents.

For each document, the prompt followed by the correct choice against the same
prompt followed by each wrong choice (the contrastive pairs of CAA and
wisent): the hidden states at the answer tokens, then the mean of the paired
differences (or, with aggregate "pca", their first principal component).

The inputs hold the texts themselves (`items`), built once from lm-eval by
`steering.lm_eval_tasks.task_source`, so the direction is a pure function of
the inputs (a vector file rebuilds it at any layer without lm-eval or the
task's data), and `doc_keys` name the documents used so that a search never
scores them (`reserved_keys`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch

from steering.errors import InvalidInputError
from steering.extract.base import Activations, only_keys, pca_direction
from steering.limits import MAX_ANSWERS_PER_ITEM, MAX_TASK_ITEMS, MAX_TEXT_CHARS, count
from steering.validate import typed

if TYPE_CHECKING:
    from steering.vector import SteeringVector

TASK, INCLUDE_PATH, SPLIT, SEED = "task", "include_path", "split", "seed"
AGGREGATE, ITEMS, DOC_KEYS = "aggregate", "items", "doc_keys"
# Where the documents came from: the task's training or validation split
# (never scored, lm-eval scores the test split), or a seeded slice of the
# scored split reserved for building (the search then leaves it out).
SPLITS = ("training", "validation", "reserved")
AGGREGATES = ("mean", "pca")
# Documents a task vector is built from unless the user says otherwise: enough
# for a stable mean of differences on a two-choice task, few enough to leave
# half of a 100-document task to the search.
DEFAULT_DOCS = 50
KEYS = (TASK, INCLUDE_PATH, SPLIT, SEED, AGGREGATE, ITEMS, DOC_KEYS)


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidInputError(f"{what} must be non-empty text, got {typed(value)}.")
    if len(value) > MAX_TEXT_CHARS:
        raise InvalidInputError(
            f"{what} is {count(len(value))} characters long; a task vector reads texts of at "
            f"most {count(MAX_TEXT_CHARS)} (the caps are in steering/limits.py)."
        )
    return value


def _item(value: Any) -> tuple[str, str, tuple[str, ...]]:
    if isinstance(value, str) or not isinstance(value, Sequence) or len(value) != 3:
        raise InvalidInputError(
            "Each task item must be [context, correct answer, [wrong answers]]."
        )
    context, correct, wrong = value
    if isinstance(wrong, str) or not isinstance(wrong, Sequence) or not wrong:
        raise InvalidInputError("Each task item needs at least one wrong answer.")
    if 1 + len(wrong) > MAX_ANSWERS_PER_ITEM:
        raise InvalidInputError(
            f"A task item has {count(1 + len(wrong))} answers; a task vector reads at most "
            f"{MAX_ANSWERS_PER_ITEM} per document (the caps are in steering/limits.py)."
        )
    return (
        _text(context, "A task item's context"),
        _text(correct, "A task item's correct answer"),
        tuple(_text(w, "A task item's wrong answer") for w in wrong),
    )


class TaskPairs:
    """V = mean over documents and wrong choices of h(prompt + correct choice)
    - h(prompt + wrong choice), h taken over the answer's tokens."""

    name = "task_pairs"

    def check(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        only_keys(self.name, inputs, KEYS)
        include_path = inputs.get(INCLUDE_PATH)
        if include_path is not None:
            include_path = _text(include_path, "The task folder")
        split, aggregate = inputs.get(SPLIT), inputs.get(AGGREGATE, "mean")
        if split not in SPLITS:
            raise InvalidInputError(f"The split must be one of {', '.join(SPLITS)}, got {split!r}.")
        if aggregate not in AGGREGATES:
            raise InvalidInputError(
                f"The aggregate must be one of {', '.join(AGGREGATES)}, got {aggregate!r}."
            )
        seed = inputs.get(SEED, 0)
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise InvalidInputError(f"The seed must be a whole number >= 0, got {seed!r}.")
        raw_items, keys = inputs.get(ITEMS), inputs.get(DOC_KEYS, ())
        if isinstance(raw_items, str) or not isinstance(raw_items, Sequence) or not raw_items:
            raise InvalidInputError("A task vector needs at least one document.")
        if len(raw_items) > MAX_TASK_ITEMS:
            raise InvalidInputError(
                f"A task vector reads at most {count(MAX_TASK_ITEMS)} documents; this one has "
                f"{count(len(raw_items))} (the caps are in steering/limits.py)."
            )
        if len(keys) > MAX_TASK_ITEMS:
            raise InvalidInputError(
                f"A task vector names at most {count(MAX_TASK_ITEMS)} documents; this one names "
                f"{count(len(keys))}."
            )
        if isinstance(keys, str) or not isinstance(keys, Sequence):
            raise InvalidInputError("doc_keys must be a list of document keys.")
        items = tuple(_item(item) for item in raw_items)
        if aggregate == "pca" and sum(len(item[2]) for item in items) < 2:
            raise InvalidInputError("PCA of paired differences needs at least two pairs.")
        return {
            TASK: _text(inputs.get(TASK), "The task name"),
            INCLUDE_PATH: include_path,
            SPLIT: split,
            SEED: seed,
            AGGREGATE: aggregate,
            ITEMS: items,
            DOC_KEYS: tuple(_text(k, "A document key") for k in keys),
        }

    def describe(self, inputs: Mapping[str, Any]) -> str:
        how = "PCA of" if inputs[AGGREGATE] == "pca" else "mean of"
        pairs = len(inputs[ITEMS])
        return f"task {inputs[TASK]}: {how} answer pairs of {pairs} {inputs[SPLIT]} docs"

    def direction(
        self, activations: Activations, inputs: Mapping[str, Any], layer: int
    ) -> torch.Tensor:
        return paired_differences(activations, inputs[ITEMS], layer, inputs[AGGREGATE])


def paired_differences(
    activations: Activations,
    items: Sequence[tuple[str, str, Sequence[str]]],
    layer: int,
    aggregate: str = "mean",
) -> torch.Tensor:
    """Mean (or PCA) over items and wrong answers of the answer-token state
    difference correct - wrong at `layer`. Every answer runs in one batch."""
    pairs = answer_pairs(items)
    index = {pair: position for position, pair in enumerate(pairs)}
    states = activations.answer_activations(pairs)[:, layer]
    rows = [
        states[index[(context, correct)]] - states[index[(context, answer)]]
        for context, correct, wrong in items
        for answer in wrong
    ]
    differences = torch.stack(rows)
    return pca_direction(differences) if aggregate == "pca" else differences.mean(dim=0)


def answer_pairs(items: Sequence[tuple[str, str, Sequence[str]]]) -> list[tuple[str, str]]:
    """The (context, answer) pairs the items read, each once, in order: what
    the model runs (and what an estimate of that work counts)."""
    pairs: list[tuple[str, str]] = []
    seen: set[tuple[str, str]] = set()
    for context, correct, wrong in items:
        for answer in (correct, *wrong):
            if (context, answer) not in seen:
                seen.add((context, answer))
                pairs.append((context, answer))
    return pairs


def doc_key(doc: Mapping[str, Any]) -> str:
    """A document's key: 16 hex digits of the SHA-256 of its fields as sorted
    JSON. Equal documents get equal keys whichever task or split holds them."""
    text = json.dumps(dict(doc), sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def reserved_keys(vectors: Iterable[SteeringVector]) -> frozenset[str]:
    """The keys of the documents the task vectors among `vectors` were built
    from: documents no score of a run with these vectors may use."""
    keys: set[str] = set()
    for vector in vectors:
        if vector.method == TaskPairs.name:
            keys.update(vector.source.inputs[DOC_KEYS])
    return frozenset(keys)


METHOD = TaskPairs()
