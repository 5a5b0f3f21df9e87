"""The Saved tab: the vector files and optimization results of the data
folder, to load or apply again after a restart.

Files are offered by name from the data folder only (steering.persist); a
visitor never types a path. Loading a vector file replaces the active
vectors; applying a result makes its best setting active, as "Apply best"
did when the run ended (the vectors it optimized must be active: the session
restored them at start).
"""

from __future__ import annotations

import html
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import gradio as gr

from steering.budget import WorkEstimate, check_reads, estimate_moves
from steering.errors import SteerSwarmError
from steering.session import Current, ModelSession
from steering.store import load_vectors
from ui import format as fmt
from ui.jobs import JobRegistry
from ui.model_access import VectorView, locked
from ui.model_jobs import APPLY, ModelJobs, busy, changed_vectors, vector_views

_KINDS = {"vectors": "vectors", "result": "result"}


@dataclass
class SavedTab:
    actions: SavedActions
    files: gr.Dropdown
    refresh: gr.Button
    load: gr.Button
    status: gr.Markdown


class SavedActions:
    """Handlers of the Saved tab, bound to a session with a data folder and
    the app's jobs (applying a result may rebuild vectors at new layers)."""

    def __init__(self, session: ModelSession, jobs: JobRegistry | None = None) -> None:
        if session.data is None:
            raise ValueError("The Saved tab needs a session with a data folder.")
        self.session = session
        self.data = session.data
        self.jobs = ModelJobs(session, jobs)

    def choices(self) -> list[tuple[str, str]]:
        """(label, "kind/name") for every saved file, newest first."""
        return [(f.label, f"{f.kind}/{f.name}") for f in self.data.saved()]

    def listing(self) -> Any:
        return gr.update(choices=self.choices(), value=None)

    def open(self, choice: str | None) -> Iterator[VectorView]:
        """Load the chosen vector file, or apply the chosen result's best
        setting under the apply rule that "Apply best" follows
        (optimize/run/apply_rule.py): a result that gained nothing, is
        outside the limits or belongs to other vectors is refused here too."""
        kind, _, name = (choice or "").partition("/")
        action = "open the saved file"
        if kind not in _KINDS or not name:
            yield gr.update(), gr.update(), fmt.failed(action, "Choose a saved file first.")
            return
        if kind == "vectors":
            yield from locked(self.session, action, _LoadVectors(self.data, name))
            return
        try:
            from optimize.run.apply_rule import gain_refusal
            from optimize.run.results import OptimizationResult

            result = OptimizationResult.load(self.data.find(kind, name))
        except ImportError as exc:  # lm-eval or pyswarms missing
            yield gr.update(), gr.update(), fmt.failed(
                "apply the result", f"the optimizer is not installed ({exc})."
            )
            return
        except SteerSwarmError as exc:
            yield gr.update(), gr.update(), fmt.failed(action, str(exc))
            return
        no_gain = gain_refusal(result)  # said at once, even while the model is busy
        if no_gain is not None:
            yield gr.update(), gr.update(), fmt.failed("apply the result", no_gain)
            return
        job = self.jobs.start(
            "Applying a saved result",
            APPLY,
            _ResultPlan(result),
            _ResultWork(self.session, result, name),
        )
        if job is None:
            yield gr.update(), gr.update(), busy(self.jobs.registry.running)
            return
        yield from vector_views(job, "apply the result")


class _LoadVectors:
    """Replace the active vectors with a saved file's (checked against the
    caps for this model before any is applied)."""

    def __init__(self, data: Any, name: str) -> None:
        self.data, self.name = data, name

    def __call__(self, current: Current) -> str:
        steerer = current.steerer
        vectors = load_vectors(self.data.find("vectors", self.name), steerer.info)
        check_reads(steerer, vectors)
        steerer.set_vectors(vectors)
        count = fmt.vector_count(len(vectors))
        return f"✓ Loaded {len(vectors)} vector(s) from {html.escape(self.name)}. {count}"


class _ResultPlan:
    """The apply rule for a saved result, then the cost of moving its vectors."""

    def __init__(self, result: Any) -> None:
        self.result = result

    def __call__(self, current: Current) -> WorkEstimate:
        from optimize.errors import ApplyRefused
        from optimize.run.apply_rule import refusal
        from optimize.scoring.placing import position_of

        steerer = current.steerer
        why = refusal(self.result, None, steerer.info, steerer.vectors)
        if why is not None:
            raise ApplyRefused(why)
        moves = [
            (steerer.vectors[position_of(steerer.vectors, t.vector)], t.layer)
            for t in self.result.tuned()
        ]
        return estimate_moves(steerer, moves)


class _ResultWork:
    """A saved result's best setting made the active vectors."""

    def __init__(self, session: ModelSession, result: Any, name: str) -> None:
        self.session, self.result, self.name = session, result, name

    def __call__(self, current: Current, _emit: Any, _control: Any) -> VectorView:
        from optimize.run.apply_rule import apply_result

        apply_result(current.steerer, self.result)
        tuned = ", ".join(
            f"#{t.vector.index + 1} → layer {t.layer} × {t.alpha:g}" for t in self.result.tuned()
        )
        count = fmt.vector_count(len(current.steerer.vectors))
        return changed_vectors(
            self.session,
            current,
            f"✓ Applied the best setting of {html.escape(self.name)}: {tuned}. {count}",
        )


def build(actions: SavedActions, tabs: Any) -> SavedTab:
    """Lay out the tab; a load or apply also updates the Steering tab's table."""
    gr.Markdown(
        f"Files kept in the data folder `{html.escape(str(actions.data.root))}`: vector files you "
        "saved and optimization results. The active vectors are kept there too and come back "
        "when the app restarts."
    )
    with gr.Row():
        files = gr.Dropdown(choices=actions.choices(), value=None, label="Saved file", scale=4)
        refresh = gr.Button("Refresh", scale=1)
    load = gr.Button("Load vectors / apply result", variant="primary")
    status = gr.Markdown("", elem_id="saved-status")
    refresh.click(actions.listing, None, [files], api_name="saved_files")
    s = tabs.steering
    load.click(
        actions.open, [files], [s.table, s.remove_choice, status], api_name="open_saved",
        concurrency_limit=None,
    )
    return SavedTab(actions, files, refresh, load, status)
