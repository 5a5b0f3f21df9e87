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

from steering.errors import SteerSwarmError
from steering.session import Current, ModelSession
from steering.store import load_vectors
from ui import format as fmt
from ui.model_access import VectorView, locked

_KINDS = {"vectors": "vectors", "result": "result"}


@dataclass
class SavedTab:
    actions: SavedActions
    files: gr.Dropdown
    refresh: gr.Button
    load: gr.Button
    status: gr.Markdown


class SavedActions:
    """Handlers of the Saved tab, bound to a session with a data folder."""

    def __init__(self, session: ModelSession) -> None:
        if session.data is None:
            raise ValueError("The Saved tab needs a session with a data folder.")
        self.session = session
        self.data = session.data

    def choices(self) -> list[tuple[str, str]]:
        """(label, "kind/name") for every saved file, newest first."""
        return [(f.label, f"{f.kind}/{f.name}") for f in self.data.saved()]

    def listing(self) -> Any:
        return gr.update(choices=self.choices(), value=None)

    def open(self, choice: str | None) -> Iterator[VectorView]:
        """Load the chosen vector file, or apply the chosen result's best setting."""
        kind, _, name = (choice or "").partition("/")

        def work(current: Current) -> str:
            if kind not in _KINDS or not name:
                return fmt.failed("open the saved file", "Choose a saved file first.")
            path = self.data.find(kind, name)
            steerer = current.steerer
            if kind == "vectors":
                vectors = load_vectors(path, steerer.info)
                steerer.set_vectors(vectors)
                return f"✓ Loaded {len(vectors)} vector(s) from {html.escape(name)}. " + fmt.vector_count(
                    len(vectors)
                )
            return _apply_result(current, path)

        yield from locked(self.session, "open the saved file", work)


def _apply_result(current: Current, path: Any) -> str:
    try:
        from optimize import OptimizationResult, apply_best
    except ImportError as exc:  # lm-eval or pyswarms missing
        return fmt.failed("apply the result", f"the optimizer is not installed ({exc}).")
    result = OptimizationResult.load(path)
    apply_best(current.steerer, result)
    tuned = ", ".join(f"#{t.vector.index + 1} → layer {t.layer} × {t.alpha:g}" for t in result.tuned())
    return f"✓ Applied the best setting of {html.escape(path.name)}: {tuned}. " + fmt.vector_count(
        len(current.steerer.vectors)
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
    load.click(actions.open, [files], [s.table, s.remove_choice, status], api_name="open_saved")
    return SavedTab(actions, files, refresh, load, status)
