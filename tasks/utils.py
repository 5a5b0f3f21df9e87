"""Offline loader for the local data files of every task YAML in this folder.

lm-eval 0.4.13 hands ``dataset_kwargs`` straight to ``datasets.load_dataset``,
which resolves a relative ``data_files`` path against the current working
directory.  The YAML therefore names this function as ``custom_dataset``: lm-eval
calls it with the task metadata and ``dataset_kwargs`` as keyword arguments, and
it resolves relative paths against the folder holding this file (the YAMLs'
folder, tasks/), so the tasks work whatever the current directory is. One
loader for all of them: lm-eval imports a `!function` only from a file beside
the YAML, so the YAMLs sit here and their data in per-task folders.
"""

import json
from pathlib import Path

import datasets

HERE = Path(__file__).resolve().parent


def _resolve(path):
    p = Path(path).expanduser()
    return p if p.is_absolute() else HERE / p


def _read_jsonl(path):
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def load_local_dataset(data_files=None, **_metadata):
    """Return a DatasetDict built from local JSON-lines files.

    ``data_files`` is the mapping from ``dataset_kwargs`` (split -> path or
    list of paths); extra keyword arguments (task metadata) are ignored.
    """
    if data_files is None:
        raise ValueError("the task YAML names no data_files")
    if isinstance(data_files, (str, Path)):
        data_files = {"test": data_files}
    splits = {}
    for split, paths in data_files.items():
        if isinstance(paths, (str, Path)):
            paths = [paths]
        rows = []
        for p in paths:
            rows.extend(_read_jsonl(_resolve(p)))
        splits[split] = datasets.Dataset.from_list(rows)
    return datasets.DatasetDict(splits)
