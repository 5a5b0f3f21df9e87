"""Reading lm-eval tasks without running a model: finding a task by name in a
folder (or lm-eval's registry), checking the names lm-eval uses, and building
a `task_pairs` vector source from a multiple-choice task.

A vector built from documents a search then scores would be graded on its own
training data. So the documents come from the task's training split when it
has one, else its validation split when it also has a test split (lm-eval
scores the test split then), and otherwise from a seeded slice of the scored
split that is reserved for building. Each document used is named by a key
(a hash of its fields) in the vector's inputs, and the optimizer's lm-eval
fitness leaves out every document whose key belongs to an active vector: of
the search task, of the held-out task, of any task over the same data
(sentiment_search and steer_sentiment word the same documents differently).
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any

import numpy as np

from steering.errors import FitnessError, InvalidInputError, short_message
from steering.extract import VectorSource, task_pairs as tp
from steering.extract.task_pairs import DEFAULT_DOCS, doc_key
from steering.rng import preserved_rng

# lm-eval's task and metric names ("arc_easy", "exact_match,strict-match"):
# ASCII words, dots, dashes, commas, colons and plus signs. A path, markup or
# a pasted page is refused here, before lm-eval looks for it.
_NAME = re.compile(r"[\w.,:+\-]{1,200}", re.ASCII)


def checked_name(kind: str, value: str) -> str:
    """`value` when it is a name lm-eval uses (`kind` names it in the error)."""
    from steering.validate import typed

    if not _NAME.fullmatch(value):
        raise InvalidInputError(
            f"{kind} {typed(value)} is not a name lm-eval uses: letters, digits and _ . - , : + "
            "only, at most 200 characters."
        )
    return value


def checked_folder(folder: object) -> str:
    """A task folder given as text or a path, as an existing folder's path."""
    if not isinstance(folder, (str, Path)) or not str(folder).strip():
        raise InvalidInputError(f"The task folder must be a path, got {folder!r}.")
    path = Path(str(folder).strip()).expanduser()
    if not path.is_dir():
        raise InvalidInputError(f"Task folder not found: {path}")
    return str(path)


def task_index(include_path: str | None) -> Any:
    """lm-eval's index of the tasks in `include_path` (None: its ~14,700
    registered tasks, 5-7 s), or FitnessError. Loads no data."""
    return _task_manager(include_path)


def _task_manager(include_path: str | None) -> Any:
    from lm_eval.tasks import TaskManager

    try:
        if include_path:
            return TaskManager(include_path=include_path, include_defaults=False)
        return TaskManager()
    except Exception as exc:  # lm-eval raises untyped errors
        raise FitnessError(f"lm-eval could not index the tasks: {short_message(exc)}") from exc


def find_task(name: str, include_path: str | None = None) -> Any:
    """An lm-eval TaskManager that knows the task `name`, or InvalidInputError.

    Cheap with `include_path` (only that folder is indexed); without it lm-eval
    indexes its ~14,700 built-in tasks (5-7 s). Loads no data.
    """
    manager = _task_manager(include_path)
    if name not in manager.all_tasks:
        where = f"in the task folder {include_path}" if include_path else "in lm-eval"
        message = f"Task {name!r} is not registered {where}."
        close = difflib.get_close_matches(name, manager.all_tasks, n=3)
        if close:
            message += " Did you mean " + ", ".join(repr(c) for c in close) + "?"
        if include_path:
            message += " A task's name is the `task:` field of its YAML file."
        else:
            message += (
                " For a task of your own, give the folder of its YAML files (--include-path)."
            )
        raise InvalidInputError(message)
    if name in manager.all_tags:
        raise InvalidInputError(
            f"{name!r} is an lm-eval tag (a list of separate tasks with no combined "
            "score), not a task or a group: pick one of its tasks."
        )
    return manager


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
    if not isinstance(task, str) or not task.strip():
        raise InvalidInputError(f"Enter an lm-eval task name, got {task!r}.")
    task = checked_name("The task", task.strip())
    folder = None if include_path is None else checked_folder(include_path)
    with preserved_rng():
        manager = find_task(task, folder)
        try:
            tasks = manager.load([task])["tasks"]
        except Exception as exc:  # lm-eval raises untyped errors
            raise FitnessError(
                f"lm-eval could not load the task {task!r}: {short_message(exc)}"
            ) from exc
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
            tp.TASK: task,
            tp.INCLUDE_PATH: folder,
            tp.SPLIT: "reserved" if "reserved" in splits else splits.pop(),
            tp.SEED: seed,
            tp.AGGREGATE: aggregate,
            tp.ITEMS: items,
            tp.DOC_KEYS: keys,
        },
    )
