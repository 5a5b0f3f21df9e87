"""Building a `task_pairs` vector source from an lm-eval multiple-choice task,
and keeping the documents it was built from out of every score.

A vector built from documents a search then scores would be graded on its own
training data. So the documents come from the task's training split when it
has one, else its validation split when it also has a test split (lm-eval
scores the test split then), and otherwise from a seeded slice of the scored
split that is reserved for building. Each document used is named by a key
(a hash of its fields) in the vector's inputs, and `LmEvalFitness` leaves out
every document whose key belongs to an active vector: of the search task, of
the held-out task, of any task over the same data (sentiment_search and
steer_sentiment word the same documents differently).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from optimize._rng import preserved_rng
from optimize.config import FitnessConfig
from optimize.errors import FitnessError
from optimize.fitness import _short, find_task
from steering.errors import InvalidInputError
from steering.extract import VectorSource
from steering.extract import task_pairs as tp
from steering.extract.task_pairs import DEFAULT_DOCS, doc_key


def _pick(count: int, wanted: int, seed: int) -> list[int]:
    """`wanted` positions of `count`, drawn with `seed` (in drawn order)."""
    return [int(i) for i in np.random.default_rng(seed).permutation(count)[:wanted]]


def _documents(task: Any, docs: int, seed: int) -> tuple[str, list[Any]]:
    if task.has_training_docs():
        split, pool = "training", list(task.training_docs())
    elif task.has_validation_docs() and task.has_test_docs():
        split, pool = "validation", list(task.validation_docs())
    else:
        split, pool = "reserved", list(task.eval_docs)
        if docs >= len(pool):
            raise InvalidInputError(
                f"The task has {len(pool)} documents and no training split: building from "
                f"{docs} would leave none to score. Use at most {len(pool) - 1}."
            )
    return split, [pool[i] for i in _pick(len(pool), min(docs, len(pool)), seed)]


def _item(task: Any, doc: Any) -> tuple[str, str, tuple[str, ...]]:
    context = task.fewshot_context(doc, 0)
    choices = list(task.doc_to_choice(doc))
    target = task.doc_to_target(doc)
    gold = choices.index(target) if isinstance(target, str) else target
    if not isinstance(gold, int) or not 0 <= gold < len(choices) or len(choices) < 2:
        raise InvalidInputError(
            "A task vector needs one correct choice out of at least two per document."
        )
    delimiter = task.config.target_delimiter
    answers = [f"{delimiter}{choice}" for choice in choices]
    return context, answers[gold], tuple(a for i, a in enumerate(answers) if i != gold)


def task_source(
    task: str,
    include_path: str | None = None,
    docs: int = DEFAULT_DOCS,
    seed: int = 0,
    aggregate: str = "mean",
) -> VectorSource:
    """A `task_pairs` source from `docs` documents of the multiple-choice task
    `task` (in `include_path`, or lm-eval's registered tasks), drawn with
    `seed` from the split described above. A group takes that many from each
    of its tasks. Loads the task's data; runs no model.

    Raises:
        InvalidInputError: unknown task, not multiple choice, too few documents.
        FitnessError: lm-eval failed to load it.
    """
    if isinstance(docs, bool) or not isinstance(docs, int) or docs < 1:
        raise InvalidInputError(f"The number of documents must be at least 1, got {docs!r}.")
    config = FitnessConfig(task=task, include_path=include_path)
    with preserved_rng():
        manager = find_task(config)
        try:
            tasks = manager.load([config.task])["tasks"]
        except Exception as exc:  # lm-eval raises untyped errors
            raise FitnessError(f"lm-eval could not load the task {task!r}: {_short(exc)}") from exc
        items, keys, splits = [], [], set()
        for name, loaded in tasks.items():
            if loaded.OUTPUT_TYPE != "multiple_choice" or loaded.multiple_input:
                raise InvalidInputError(
                    f"The task {name!r} is not a multiple-choice task with the choices as "
                    "answers, so it has no correct/wrong answer pairs."
                )
            split, chosen = _documents(loaded, docs, seed)
            splits.add(split)
            for doc in chosen:
                items.append(_item(loaded, doc))
                keys.append(doc_key(doc))
    return VectorSource(
        tp.TaskPairs.name,
        {
            tp.TASK: config.task,
            tp.INCLUDE_PATH: config.include_path,
            tp.SPLIT: "reserved" if "reserved" in splits else splits.pop(),
            tp.SEED: seed,
            tp.AGGREGATE: aggregate,
            tp.ITEMS: items,
            tp.DOC_KEYS: keys,
        },
    )
