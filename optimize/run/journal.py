"""A run's journal: every scored evaluation, appended as it is scored, so a run
stopped by Ctrl-C, SIGTERM, a crash or a power cut can be resumed without
scoring anything twice.

The file is JSON lines. The first line says which run it is (`identity`: the
model, vectors, fitness, search space, swarm, objective and strategy, and the
command's arguments when the command line made it); every further line is
one evaluation (the unsteered baseline, a search setting or a held-out
scoring) that ran the model. Each line is written with one `write` on a file
opened for appending, then flushed to the disk (`fsync`), so after any stop
the file holds whole lines, plus at most one torn last line that is dropped
when the journal is read back.

Resuming replays the run's seed with the journal's scores (`run_search`'s
`earlier`): the search asks for the same settings in the same order, finds
those already scored, and scores only the rest, so the resumed history equals
an uninterrupted one. The journal is removed once the run's result is saved
complete; until then it marks an interrupted run (`interrupted_runs`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optimize.config.space import Key
from optimize.errors import JournalWriteError
from optimize.scoring.evaluation import Evaluation
from steering.errors import InvalidInputError
from steering.outputs import reason

FORMAT = "steerswarm.journal"
# 3: the swarm's velocities are limited by default (PsoConfig.velocity_limit), so an
# earlier journal's search would not continue along the path it started.
VERSION = 3
SUFFIX = ".journal.jsonl"
SEARCH, BASELINE, HELDOUT = "search", "baseline", "heldout"
# the baseline or a finalist on the confirmation documents (optimize/run/confirm.py)
CONFIRM = "confirm"
BUDGET = "budget"  # the swarm a time budget planned after the baseline
_WITH_VALUES = (BASELINE, CONFIRM, HELDOUT)  # kept with their per-document values


def journal_path(result: str | Path) -> Path:
    """Where the journal of a run whose result goes to `result` is kept: beside it."""
    result = Path(result)
    return result.with_name(result.stem + SUFFIX)


def _normal(value: Any) -> Any:
    """`value` as JSON gives it back (tuples become lists), for comparisons."""
    return json.loads(json.dumps(value, allow_nan=False))


@dataclass(frozen=True)
class JournalState:
    """What a journal holds: its run's identity and the evaluations it kept."""

    identity: dict[str, Any]
    baseline: tuple[Evaluation, tuple[float, ...]] | None = None
    search: dict[Key, Evaluation] = field(default_factory=dict)
    heldout: dict[Key, tuple[Evaluation, tuple[float, ...]]] = field(default_factory=dict)
    confirm: dict[Key, tuple[Evaluation, tuple[float, ...]]] = field(default_factory=dict)
    budget: tuple[int, int, str] | None = None  # (particles, iterations, the plan's sentence)

    @property
    def scored(self) -> int:
        """How many evaluations ran the model (the baseline included)."""
        return (
            (self.baseline is not None) + len(self.search) + len(self.heldout) + len(self.confirm)
        )


def read_journal(path: str | Path) -> JournalState:
    """Read a journal back: its identity and evaluations. A torn last line (a
    write cut by a power loss) is ignored; anything else unreadable is an
    InvalidInputError naming the file."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise InvalidInputError(f"Journal not found: {path}") from exc
    except OSError as exc:
        raise InvalidInputError(f"Cannot read the journal {path}: {exc.strerror}") from exc
    lines = raw.split(b"\n")
    complete, torn = lines[:-1], lines[-1]  # no newline after it: cut mid-write
    del torn
    try:
        header = json.loads(complete[0]) if complete else None
    except (json.JSONDecodeError, UnicodeDecodeError):
        header = None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise InvalidInputError(f"{path.name} is not a steerswarm run journal.")
    if header.get("version") != VERSION:
        raise InvalidInputError(
            f"{path.name} is a journal of version {header.get('version')!r}, written by another "
            f"steerswarm; this one reads version {VERSION}: start that run again."
        )
    baseline = None
    search: dict[Key, Evaluation] = {}
    heldout: dict[Key, tuple[Evaluation, tuple[float, ...]]] = {}
    confirm: dict[Key, tuple[Evaluation, tuple[float, ...]]] = {}
    budget = None
    for number, line in enumerate(complete[1:], start=2):
        try:
            entry = json.loads(line)
            kind = entry["kind"]
            if kind == BUDGET:
                budget = (int(entry["particles"]), int(entry["iterations"]), str(entry["line"]))
                continue
            evaluation = Evaluation.from_dict(entry["evaluation"])
            values = tuple(float(v) for v in entry.get("values", ()))
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as exc:
            raise InvalidInputError(
                f"Line {number} of the journal {path.name} is damaged: {exc!r}"
            ) from exc
        if kind == BASELINE:
            baseline = (evaluation, values)
        elif kind == SEARCH:
            search.setdefault(evaluation.setting.key, evaluation)
        elif kind == CONFIRM:
            confirm.setdefault(evaluation.setting.key, (evaluation, values))
        elif kind == HELDOUT:
            heldout.setdefault(evaluation.setting.key, (evaluation, values))
    return JournalState(dict(header["identity"]), baseline, search, heldout, confirm, budget)


def _differences(kept: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[str]:
    names = sorted(set(kept) | set(wanted))
    return [n for n in names if n != "command" and kept.get(n) != wanted.get(n)]


def run_identity(
    model: str, num_layers: int, records: Sequence[Any], plan: Any,
    settings: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """What makes two runs the same run: a journal is resumed only by its own.
    `plan` is the run's `RunPlan`; a guarded fitness's guard task counts (its
    scores are in every evaluation). `settings`, the run's settings by name
    when it was assembled from them, let a page rebuild the run to resume it."""

    def config(fitness: Any) -> Any:
        return None if fitness is None else dataclasses.asdict(fitness.config)

    fitness = plan.fitness
    split = getattr(fitness, "split", None)
    guard_task = getattr(fitness, "guard_task", None)
    identity: dict[str, Any] = _normal({
        "model": {"name": model, "num_layers": num_layers},
        "vectors": [r.to_dict() for r in records],
        "fitness": config(fitness),
        "split": None if split is None else split.to_dict(),
        "confirm": config(plan.confirm),
        "heldout": config(plan.heldout),
        "guard_task": config(guard_task),
        "space": dataclasses.asdict(plan.space),
        "pso": dataclasses.asdict(plan.pso),
        "objective": {"name": plan.ranking.name, "options": plan.ranking.options.to_dict()},
        "strategy": plan.strategy,
        "finalists": plan.finalists,
        "significance": plan.significance,
        "settings": None if settings is None else dict(settings),
    })
    return identity


@dataclass(frozen=True)
class JournalFile:
    """Where a run keeps its journal, whether it continues the one there, and
    the command line that started it (kept so `--resume` alone repeats it)."""

    path: Path
    resume: bool = False
    command: tuple[str, ...] | None = None

    def check(self) -> None:
        """InvalidInputError when a new run would overwrite an interrupted run's
        journal (or resume one that is not there): cheap, before any model loads."""
        if self.resume:
            read_journal(self.path)
        elif self.path.exists():
            raise InvalidInputError(
                f"An interrupted run's journal is already at {self.path}: continue it with "
                f"--resume {self.path}, or delete it to start over."
            )

    def open(self, identity: Mapping[str, Any]) -> Journal:
        self.check()
        whole = {**identity, "command": None if self.command is None else list(self.command)}
        if self.resume:
            return Journal.resume(self.path, whole)
        return Journal.start(self.path, whole)

    def finish(self) -> None:
        """The run's result is saved complete: the journal is no longer needed."""
        self.path.unlink(missing_ok=True)


class Journal:
    """The journal of one run, open for appending.

    `Journal.start(path, identity)` begins a new one (refused when the file
    exists: it is an interrupted run to resume or delete); `Journal.resume`
    reopens one whose identity matches the run being started, with what it
    holds in `baseline`, `search` and `heldout`."""

    def __init__(self, path: Path, state: JournalState) -> None:
        self.path = path
        self.identity = state.identity
        self.baseline = state.baseline
        self.search = dict(state.search)
        self.heldout = dict(state.heldout)
        self.confirm = dict(state.confirm)
        self.budget = state.budget
        self._fd: int | None = None

    @classmethod
    def start(cls, path: str | Path, identity: Mapping[str, Any]) -> Journal:
        path = Path(path)
        normal: dict[str, Any] = _normal(dict(identity))
        JournalFile(path).check()
        journal = cls(path, JournalState(normal))
        try:
            journal._open(os.O_CREAT | os.O_EXCL)
        except OSError as exc:
            raise _write_error(path, exc) from exc
        try:
            journal._append({"format": FORMAT, "version": VERSION, "identity": normal})
        except JournalWriteError:
            journal.close()  # a journal without its first line is no run: none is left
            path.unlink(missing_ok=True)
            raise
        return journal

    @classmethod
    def resume(cls, path: str | Path, identity: Mapping[str, Any]) -> Journal:
        """Reopen the journal at `path` for the run `identity` (InvalidInputError
        when it belongs to another run, naming what differs)."""
        path = Path(path)
        state = read_journal(path)
        different = _differences(state.identity, _normal(dict(identity)))
        if different:
            raise InvalidInputError(
                f"The journal {path.name} is from another run: its "
                f"{', '.join(different)} differ from this one's. Resume with the same settings."
            )
        journal = cls(path, state)
        journal._drop_torn_line()
        journal._open(0)
        return journal

    def _drop_torn_line(self) -> None:
        raw = self.path.read_bytes()
        keep = raw.rfind(b"\n") + 1
        if keep < len(raw):
            os.truncate(self.path, keep)

    def _open(self, flags: int) -> None:
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | flags, 0o644)

    def _append(self, entry: Mapping[str, Any]) -> None:
        if self._fd is None:
            raise InvalidInputError(f"The journal {self.path.name} is closed.")
        line = json.dumps(entry, allow_nan=False, separators=(",", ":")).encode() + b"\n"
        try:
            os.write(self._fd, line)  # one write, O_APPEND: a whole line or a torn last one
            os.fsync(self._fd)
        except OSError as exc:
            raise _write_error(self.path, exc) from exc

    def record(self, kind: str, evaluation: Evaluation, values: Sequence[float] = ()) -> None:
        """Append `evaluation` (of `kind`: BASELINE, SEARCH, CONFIRM or HELDOUT;
        all but SEARCH with their per-document `values`) unless it is a cache
        hit or the journal already holds it."""
        key = evaluation.setting.key
        by_kind: dict[str, Mapping[Key, Any]] = {
            SEARCH: self.search, HELDOUT: self.heldout, CONFIRM: self.confirm
        }
        kept = by_kind.get(kind, {})
        if evaluation.cached or key in kept:
            return
        if kind == BASELINE:
            if self.baseline is not None:
                return
            self.baseline = (evaluation, tuple(values))
        elif kind == SEARCH:
            self.search[key] = evaluation
        elif kind == CONFIRM:
            self.confirm[key] = (evaluation, tuple(values))
        elif kind == HELDOUT:
            self.heldout[key] = (evaluation, tuple(values))
        else:
            raise ValueError(f"unknown journal entry kind {kind!r}")
        entry = {"kind": kind, "evaluation": evaluation.to_dict()}
        self._append(entry | ({"values": list(values)} if kind in _WITH_VALUES else {}))

    def record_budget(self, particles: int, iterations: int, line: str) -> None:
        """Append the swarm a time budget planned (once)."""
        if self.budget is None:
            self.budget = (particles, iterations, line)
            entry = {"kind": BUDGET, "particles": particles, "iterations": iterations}
            self._append(entry | {"line": line})

    def close(self, *, finished: bool = False) -> None:
        """Close the file; `finished` (the result is saved complete) also removes it."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if finished:
            self.path.unlink(missing_ok=True)


def _write_error(path: Path, exc: OSError) -> JournalWriteError:
    return JournalWriteError(
        f"Could not write the run's journal {path.name} in {path.parent}: {reason(exc)}. "
        "The run stopped; free some space (or make the folder writable) and start it again."
    )


def interrupted_runs(folder: str | Path) -> list[tuple[Path, JournalState]]:
    """The journals of interrupted runs in `folder` (newest first), each read
    back; unreadable files are left out."""
    found = []
    for path in Path(folder).glob("*" + SUFFIX):
        try:
            found.append((path.stat().st_mtime, path, read_journal(path)))
        except (OSError, InvalidInputError):
            continue
    return [(path, state) for _, path, state in sorted(found, key=lambda t: -t[0])]
