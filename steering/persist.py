"""The app's data folder: what a user made survives a restart.

    <data folder>/
        session/active-vectors.safetensors   the active vectors (ids, method, inputs)
        session/session.json                 a small index: model, active ids, last result
        vectors/*.safetensors                vector files saved with "Save vectors"
        results/*.json                       optimization results
        tasks/                               the user's task folder (see task_sources)

The active vectors are written (atomically, see steering.outputs) after
every change and put back on the model when the app starts. A vector file
made for another model (name, hidden size or layer count) is not applied: it
is moved to vectors/ under a name that says so, and the message names its
vectors, so nothing is lost and nothing is applied to a model it was not
made for. Only the names listed here are ever opened from the UI: a
visitor picks a file by name, never types a path.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from steering.budget import check_reads
from steering.engine import Steerer
from steering.errors import InvalidInputError, SteerSwarmError
from steering.outputs import atomic_write, reason
from steering.store import load_vectors, read_metadata, save_vectors
from steering.validate import typed

INDEX_FORMAT = "steerswarm.session"
INDEX_VERSION = 1


@dataclass(frozen=True)
class SavedFile:
    """A file of the data folder, offered by name."""

    kind: str  # "vectors" or "result"
    name: str
    path: Path
    modified: float

    @property
    def label(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(self.modified))
        return f"{'vectors' if self.kind == 'vectors' else 'result'} · {self.name} · {when}"


class DataFolder:
    """One app's data folder (the webui's user_data/steerswarm, or the
    standalone app's --data-dir)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.session_dir = self.root / "session"
        self.vectors_dir = self.root / "vectors"
        self.results_dir = self.root / "results"
        self.active_file = self.session_dir / "active-vectors.safetensors"
        self.index_file = self.session_dir / "session.json"

    # -- the session -----------------------------------------------------------

    def keep(self, steerer: Steerer) -> str:
        """Write the active vectors and the index. Returns "" or, when the
        folder cannot be written, a one-line warning (the vectors stay active
        in memory; the last written session stays on disk)."""
        try:
            if steerer.vectors:
                save_vectors(self.active_file, steerer.vectors, steerer.info)
            else:
                self.active_file.unlink(missing_ok=True)
            self._write_index(steerer)
        except OSError as exc:
            return f"⚠ Could not save the session in {self.session_dir}: {reason(exc)}."
        return ""

    def note_result(self, path: Path) -> None:
        """Record the last optimization result in the index (best effort)."""
        index = self.index()
        index["last_result"] = path.name
        with contextlib.suppress(OSError):  # best effort: the result file itself is written
            atomic_write(self.index_file, json.dumps(index, indent=2).encode())

    def index(self) -> dict[str, Any]:
        try:
            data = json.loads(self.index_file.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError):
            return {}
        return data if isinstance(data, dict) and data.get("format") == INDEX_FORMAT else {}

    def _write_index(self, steerer: Steerer) -> None:
        info = steerer.info
        index = {
            **self.index(),
            "format": INDEX_FORMAT,
            "version": INDEX_VERSION,
            "updated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "model": {
                "name": info.name, "hidden_size": info.hidden_size, "num_layers": info.num_layers
            },
            "active": [v.id for v in steerer.vectors],
        }
        atomic_write(self.index_file, json.dumps(index, indent=2).encode())

    def restore(self, steerer: Steerer) -> str:
        """Put the last session's vectors on `steerer`; the message to show
        ("" when there was nothing to restore)."""
        if not self.active_file.is_file():
            return ""
        try:
            meta = read_metadata(self.active_file)
            made_for = meta["model"]
            info = steerer.info
            if (made_for["name"], made_for["hidden_size"], made_for["num_layers"]) != (
                info.name, info.hidden_size, info.num_layers,
            ):
                kept = self._set_aside(f"made-for-{made_for['name']}")
                names = "; ".join(_entry_name(e) for e in meta["vectors"])
                return (
                    f"Not restored: {len(meta['vectors'])} vector(s) of the last session were "
                    f"made for {made_for['name']} (hidden size {made_for['hidden_size']}, "
                    f"{made_for['num_layers']} layers), not {info.name} (hidden size "
                    f"{info.hidden_size}, {info.num_layers} layers): {names}. They are kept "
                    f"in {kept}."
                )
            vectors = load_vectors(self.active_file, info)
            check_reads(steerer, vectors)  # the caps on what a job may read, for this model
            steerer.set_vectors(vectors)
        except SteerSwarmError as exc:
            kept = self._set_aside("unreadable")
            return (
                f"Could not restore the last session's vectors ({exc}); the file is kept in {kept}."
            )
        return (
            f"Restored {len(vectors)} steering vector(s) of the last session from {self.root}."
        )

    def _set_aside(self, why: str) -> Path:
        """Move the session's vector file into vectors/ (so the next save does
        not overwrite it, and it is listed for loading later)."""
        safe = "".join(c if c.isalnum() or c in "._-" else "-" for c in why)[:60]
        target = self.vectors_dir / f"session-{safe}-{time.strftime('%Y%m%d-%H%M%S')}.safetensors"
        try:
            self.vectors_dir.mkdir(parents=True, exist_ok=True)
            self.active_file.replace(target)
        except OSError:
            return self.active_file
        return target

    # -- saved files -----------------------------------------------------------

    def saved(self) -> list[SavedFile]:
        """The saved vector files and results, newest first."""
        found: list[SavedFile] = []
        for kind, folder, pattern in (
            ("vectors", self.vectors_dir, "*.safetensors"),
            ("result", self.results_dir, "*.json"),
        ):
            if folder.is_dir():
                found.extend(
                    SavedFile(kind, path.name, path, path.stat().st_mtime)
                    for path in folder.glob(pattern)
                    if path.is_file() and not path.name.startswith(".")
                )
        return sorted(found, key=lambda f: (-f.modified, f.name))

    def find(self, kind: str, name: str | None) -> Path:
        """The listed file of `kind` called `name` (never a path from outside)."""
        for saved in self.saved():
            if saved.kind == kind and saved.name == name:
                return saved.path
        raise InvalidInputError(
            f"There is no saved {kind} file called {typed(name)}; refresh the list."
        )


def _entry_name(entry: dict[str, Any]) -> str:
    inputs = entry.get("inputs") or {}
    prompts = inputs.get("prompts") or entry.get("prompts") or []
    text = " | ".join(prompts)
    text = text if len(text) <= 40 else text[:39] + "…"
    return f"layer {entry['layer']} “{text}”"
