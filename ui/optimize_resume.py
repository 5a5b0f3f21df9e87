"""What the Optimize tab adds for runs that survive a stop and for Ray
workers: each run's journal in the results folder, the offer to resume an
interrupted run (found by its journal after a crash, a restart or a cancel),
the request that continues it, and the workers a run with "Ray workers" set
scores on (`workers_for`, called inside the run's job: the workers load the
model there).
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from optimize.run.journal import SUFFIX, JournalFile, JournalState, interrupted_runs
from optimize.run.settings import RunSettings
from optimize.scoring.task_sources import AllowedTaskSources
from steering.errors import InvalidInputError
from steering.session import Current
from ui import format as fmt
from ui.optimize_form import RunRequest


def new_journal(folder: Path | None) -> JournalFile | None:
    """The journal of a run started now (None when results are not kept)."""
    if folder is None:
        return None
    Path(folder).mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return JournalFile(Path(folder) / f"optimization-{stamp}{SUFFIX}")


def latest_interrupted(
    folder: Path | None, running: Path | None = None
) -> tuple[Path, JournalState] | None:
    """The newest interrupted run's journal in `folder`, read back, or None;
    `running` is the journal of the run going on now, which is not one."""
    if folder is None or not Path(folder).is_dir():
        return None
    found = [(path, state) for path, state in interrupted_runs(folder) if path != running]
    return found[0] if found else None


def offer_text(found: tuple[Path, JournalState] | None) -> str:
    """The line that offers to resume an interrupted run (empty when none)."""
    if found is None:
        return ""
    path, state = found
    identity = state.identity
    pso, fitness = identity.get("pso", {}), identity.get("fitness", {})
    planned = int(pso.get("particles", 0)) * int(pso.get("iterations", 0))
    return (
        f"⟲ An interrupted run ({fmt.md(path.name)}: {fmt.md(fitness.get('task', '?'))}, "
        f"{len(state.search)} settings of at most {planned} scored) can be resumed: "
        "**Resume interrupted run** finishes it without scoring those again."
    )


def resume_offer(folder: Path | None, running: Path | None = None) -> tuple[str, Any]:
    """The Optimize tab's offer line and the update of its Resume button
    (`running`: the journal of the run going on now, not offered)."""
    import gradio as gr

    text = offer_text(latest_interrupted(folder, running))
    return text, gr.update(visible=bool(text))


def request_from(state: JournalState, sources: AllowedTaskSources | None = None) -> RunRequest:
    """The run request an interrupted run was started with, checked as if it
    were typed into the form today (the task folder among `sources`, every
    value within the table's bounds): InvalidInputError when its journal
    does not say it or today's rules refuse it."""
    identity = state.identity
    values = identity.get("settings")
    if not isinstance(values, dict):
        raise InvalidInputError(
            "The interrupted run's journal does not keep its settings (it was started from "
            "the command line): resume it there with --resume."
        )
    try:
        vector_ids = tuple(str(v["id"]) for v in identity["vectors"])
    except (KeyError, TypeError) as exc:
        raise InvalidInputError(f"The interrupted run's journal is incomplete: {exc!r}.") from exc
    settings = RunSettings.from_values(values, sources=sources or AllowedTaskSources())
    if not settings.scores_task:
        raise InvalidInputError(
            "An interrupted concept-strength run cannot be resumed here (its journal "
            "does not keep which prompts were held out): start it again."
        )
    return RunRequest(vector_ids, settings)


def resumable(
    folder: Path | None, sources: AllowedTaskSources | None = None
) -> tuple[RunRequest, JournalFile]:
    """The request and journal that finish the newest interrupted run in
    `folder` (InvalidInputError when there is none, or today's rules refuse it)."""
    found = latest_interrupted(folder)
    if found is None:
        raise InvalidInputError("There is no interrupted run to resume.")
    return request_from(found[1], sources), JournalFile(found[0], resume=True)


def workers_for(
    current: Current, settings: RunSettings, indices: Sequence[int],
    cancel: threading.Event | None = None,
) -> Any:
    """The Ray workers a run with "Ray workers" above 0 scores on, started:
    each has loaded the model from the files this app loaded it from, and the
    active vectors (call it inside the run's job). None for 0. InvalidInputError
    for a model handed over in memory (the webui's), which another process
    cannot load."""
    if settings.workers == 0:
        return None
    origin = current.loaded.origin
    if origin is None:
        raise InvalidInputError(
            "Ray workers load the model from its files, and this model was handed over in "
            "memory (text-generation-webui): set Ray workers to 0, or run the standalone app."
        )
    from optimize.run.assembly import RunRecipe
    from optimize.workers.ray import RayOptions, RayWorkers
    from steering import save_vectors

    steerer = current.steerer
    with tempfile.TemporaryDirectory(prefix="steerswarm-workers-") as folder:
        path = save_vectors(Path(folder) / "active.safetensors", steerer.vectors, steerer.info)
        recipe = RunRecipe.of_file(path, settings, model=origin[0], gguf_file=origin[1])
    workers = RayWorkers(recipe, indices, RayOptions(workers=settings.workers))
    workers.start(cancel)  # a failed or cancelled start closes what it started
    return workers
