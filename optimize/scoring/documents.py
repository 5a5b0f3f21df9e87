"""How many documents a task has, counted before any model runs, so a page
can say what a run will score while its form is still being filled in.

A run counts its documents itself as it builds its requests (LmEvalFitness).
A plan line cannot wait for that: it is redrawn on every change of the form.
So this loads the task's documents once through lm-eval's task index (no
model, no prompts built) and keeps the counts, keyed by the task, its folder
and the newest modification time of the folder's files: an edited task is
counted again, an unchanged one never.

Only tasks of a task folder are counted. lm-eval's registered tasks fetch
their data from the network, and indexing them takes seconds: for them the
count is None and the plan says the run counts them when it starts.
Documents a task vector was built from are left out of a run, not of this
count, so a plan with such a vector overstates the search documents a little.

Loading a task draws task ids from Python's global `random` (lm-eval's
`random_task_id`); no run draws from it (runs keep their own numpy and torch
generators), so counting while a run goes on cannot change the run.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from pathlib import Path

log = logging.getLogger(__name__)

_LOCK = threading.Lock()  # lm-eval's task index is not made for two threads at once


def _stamp(folder: Path) -> float:
    """The newest modification time under `folder` (its task files and data)."""
    newest = folder.stat().st_mtime
    for root, _dirs, files in os.walk(folder):
        for name in files:
            try:
                newest = max(newest, (Path(root) / name).stat().st_mtime)
            except OSError:  # removed while walking
                continue
    return newest


@functools.lru_cache(maxsize=64)
def _counted(task: str, folder: str, stamp: float) -> tuple[int, ...] | None:
    """Documents of each subtask of `task` in `folder` (None: it cannot be
    loaded); `stamp` only keys the cache."""
    del stamp
    from steering.errors import SteerSwarmError
    from steering.lm_eval_tasks import find_task

    try:
        manager = find_task(task, folder)
        loaded = manager.load([task])["tasks"]
        return tuple(len(loaded[name].eval_docs) for name in sorted(loaded))
    except SteerSwarmError as exc:
        log.info("not counting the documents of %s: %s", task, exc)
        return None
    except Exception as exc:  # noqa: BLE001 - lm-eval raises untyped errors; a plan line must not fail
        log.info("not counting the documents of %s: %s: %s", task, type(exc).__name__, exc)
        return None


def task_documents(task: str | None, include_path: str | None) -> tuple[int, ...] | None:
    """How many documents each subtask of `task` has (one number for a plain
    task), or None when it is not counted here: no task, a registered task
    (no folder), or one that cannot be loaded. Cached (see the module)."""
    if not task or not include_path:
        return None
    folder = Path(include_path)
    if not folder.is_dir():
        return None
    with _LOCK:
        return _counted(task, str(folder.resolve()), _stamp(folder))


def limited(counts: tuple[int, ...], limit: int | None) -> tuple[int, ...]:
    """The documents a run uses of each subtask: at most `limit` of each (as
    lm-eval's limit does), all of them with no limit."""
    return tuple(counts if limit is None else (min(n, limit) for n in counts))


@functools.lru_cache(maxsize=16)
def _listed(folder: str, stamp: float) -> tuple[str, ...]:
    del stamp
    from steering.errors import SteerSwarmError
    from steering.lm_eval_tasks import task_index

    try:
        manager = task_index(folder)
    except SteerSwarmError as exc:
        log.info("not listing the tasks of %s: %s", folder, exc)
        return ()
    tags = set(manager.all_tags)
    return tuple(sorted(name for name in manager.all_tasks if name not in tags))


def folder_tasks(include_path: str | None) -> tuple[str, ...]:
    """The tasks and groups of a task folder, by name (its tags left out: they
    have no score of their own); () for no folder or one that cannot be
    indexed. Cached like the counts."""
    if not include_path:
        return ()
    folder = Path(include_path)
    if not folder.is_dir():
        return ()
    with _LOCK:
        return _listed(str(folder.resolve()), _stamp(folder))
