"""The Explore tab: see where and how hard one vector steers before searching.

Four tools for the vector chosen by its id: the layer scan, the layer x
strength map, side-by-side completions at chosen map cells, and the vector
inspector. Every model use runs as a `ModelJob` under the model lock; the map
and the side-by-side stop at the next row or reply after **Cancel**. Nothing
changes the active vectors except **Apply this cell**.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import gradio as gr

from steering.neutral import neutral_sentences
from steering.explore_map import (
    DEFAULT_NEUTRAL,
    DEFAULT_STRENGTHS,
    MapCell,
    MapGrid,
    MapState,
    StrengthMap,
    apply_cell,
    cell_key,
    cell_vector,
    default_layers,
)
from steering.errors import InvalidInputError, SteerSwarmError
from steering.explore import (
    DPRIME,
    SCAN_MEASURES,
    compare_completions,
    inspect_vector,
    scan_vector,
)
from steering.generate import GenerationSettings
from steering.session import Current, ModelSession
from ui import explore_view as view
from ui import format as fmt
from ui.jobs import WAITING, ModelJob
from ui.model_access import peek_facts

log = logging.getLogger(__name__)

Emit = Callable[[Any], None]
Event = tuple[str, Any]
CELL_HEADERS = ["Layer", "Strength", "Alpha", "Gain (nats/token)", "KL (nats/token)"]
COMPARE_HEADERS = ["Setting", "Completion"]
LENS_HEADERS = ["Promoted", "Logit", "Suppressed", "Logit"]
DEFAULT_PROMPT = "Describe your morning in two sentences."


class ExploreActions:
    """The Explore tab's handlers, bound to one model session."""

    def __init__(self, session: ModelSession) -> None:
        self.session = session
        self._cancel = threading.Event()

    # -- plumbing ------------------------------------------------------------

    def _job(self, action: str, work: Callable[[Current, Emit], Any]) -> Iterator[Event]:
        """Run `work(current, emit)` under the model lock. Yields ('item', x)
        per emit, then ('done', result); the wait and any failure come as
        ('status', message), which a handler shows with its other outputs kept."""
        self._cancel.clear()
        job = ModelJob(self.session.lock, lambda emit: work(self.session.current(), emit))
        try:
            for kind, item in job.events():
                yield ("status", fmt.WAITING) if kind == WAITING else ("item", item)
        except Exception as exc:  # no model, a refused input, or a bug
            if not isinstance(exc, SteerSwarmError):
                log.exception("explore action %r failed", action)
            yield "status", fmt.failure(action, exc)
            return
        yield "done", job.result

    @staticmethod
    def _vector(current: Current, vector_id: str | None) -> Any:
        if not vector_id:
            raise InvalidInputError("Choose a vector first (add one in the Steering tab).")
        return current.steerer.find(vector_id)

    def cancel(self) -> str:
        self._cancel.set()
        return "✕ Cancelling: the map stops after this row, the completions after this one."

    def vector_choices(self, selected: str | None = None) -> Any:
        """The active vectors as (label, id) choices, keeping the selection while
        it is still active. Does not wait while the model is busy."""
        facts = peek_facts(self.session)
        if facts is None:
            return gr.update()
        choices = fmt.vector_choices(facts[1])
        ids = [value for _label, value in choices]
        value = selected if selected in ids else (ids[0] if ids else None)
        return gr.update(choices=choices, value=value)

    # -- layer scan ----------------------------------------------------------

    def scan(self, vector_id: str | None, measure: str | None) -> Iterator[tuple[Any, ...]]:
        """(plot, range state, use-range button, status)."""
        measure = measure or DPRIME
        keep = (gr.update(),) * 3

        def work(current: Current, _emit: Any) -> Any:
            return scan_vector(current.steerer, self._vector(current, vector_id), measure)

        for kind, item in self._job("scan the layers", work):
            if kind == "status":
                yield (*keep, item)
            elif kind == "done":
                best = item.scores[item.best]
                yield (
                    view.scan_bars(item, SCAN_MEASURES[measure]),
                    (item.low, item.high),
                    gr.update(interactive=True),
                    f"✓ Suggested layers **{item.low}–{item.high}** (highest mean separation); "
                    f"the best single layer is {item.best} ({best:.2f}).",
                )

    @staticmethod
    def use_range(layer_range: tuple[int, int] | None) -> tuple[Any, Any, str]:
        """(Optimize lowest layer, highest layer, status) from the scan's range."""
        if not layer_range:
            return gr.update(), gr.update(), "Run the layer scan first."
        low, high = layer_range
        return low, high, f"✓ The Optimize tab's layer bounds are now {low}–{high}."

    # -- layer x strength map ------------------------------------------------

    def map(
        self, vector_id: str | None, layers: str | None, strengths: str | None, neutral: Any
    ) -> Iterator[tuple[Any, ...]]:
        """(heatmaps, cell table, map state, apply choices, compare choices,
        status), after every row."""
        keep = (gr.update(),) * 5
        try:
            layer_list = view.numbers(layers, "Layers", int)
            strength_list = view.numbers(strengths, "Strengths", float) or DEFAULT_STRENGTHS
            count = int(neutral) if neutral is not None and float(neutral).is_integer() else -1
            texts = neutral_sentences()
            if not 1 <= count <= len(texts):
                raise InvalidInputError(
                    f"Neutral sentences must be a whole number from 1 to {len(texts)}, "
                    f"got {neutral!r}."
                )
        except (SteerSwarmError, TypeError, ValueError) as exc:
            yield (*keep, fmt.failed("compute the map", str(exc)))
            return

        def work(current: Current, emit: Any) -> Any:
            vector = self._vector(current, vector_id)
            steerer = current.steerer
            grid = MapGrid(layer_list or default_layers(steerer.info.num_layers), strength_list)
            neutral_texts = neutral_sentences(count=count)  # spread over the file's topics
            scorer = StrengthMap(steerer, vector.prompts, vector.contrast_prompts, neutral_texts)
            cells: list[MapCell] = []
            emit(MapState(vector.id, grid, ()))
            direction_at = self._direction_at(steerer, vector)
            for row in scorer.rows(grid, direction_at, self._cancel.is_set):
                cells.extend(row)
                emit(MapState(vector.id, grid, tuple(cells)))
            return self._cancel.is_set() and len(cells) < grid.cells

        state = None
        for kind, item in self._job("compute the map", work):
            if kind == "status":
                yield (*keep, item)
            elif kind == "item":
                state = item
                yield (*self._map_view(state), f"Computing the map: {self._count(state)}…")
            elif state is not None:
                word = "✕ Cancelled" if item else "✓ Done"
                yield (*self._map_view(state), f"{word}: {self._count(state)}.")

    @staticmethod
    def _direction_at(steerer: Any, vector: Any) -> Callable[[int], Any]:
        return lambda layer: vector.source.direction(steerer, layer)

    @staticmethod
    def _count(state: MapState) -> str:
        return f"{len(state.cells)} of {state.grid.cells} cells"

    @staticmethod
    def _map_view(state: MapState) -> tuple[Any, ...]:
        choices = view.cell_choices(state.cells, cell_key)
        return (
            view.heatmaps(state.grid, state.cells),
            view.cell_rows(state.cells),
            state,
            gr.update(choices=choices, value=None),
            gr.update(choices=choices, value=[]),
        )

    def apply(
        self, vector_id: str | None, key: str | None, state: MapState | None
    ) -> Iterator[tuple[Any, str]]:
        """(vector choices, status): make the chosen cell the vector's setting."""
        if state is None or state.vector_id != vector_id:
            yield gr.update(), fmt.failed("apply the cell", "Compute a map for this vector first.")
            return
        try:
            cell = state.cell(key)
        except SteerSwarmError as exc:
            yield gr.update(), fmt.failed("apply the cell", str(exc))
            return

        def work(current: Current, _emit: Any) -> Any:
            return apply_cell(current.steerer, vector_id, cell)

        for kind, item in self._job("apply the cell", work):
            if kind == "status":
                yield gr.update(), item
            elif kind == "done":
                yield (
                    self.vector_choices(vector_id),
                    f"✓ The vector is now at layer {item.layer} with alpha {item.alpha:.4g} "
                    f"(strength {cell.strength:g}).",
                )

    # -- side by side --------------------------------------------------------

    def compare(
        self, vector_id: str | None, keys: list[str] | None, prompt: str | None,
        max_tokens: Any, state: MapState | None,
    ) -> Iterator[tuple[Any, str]]:
        """(table of completions, status), streamed."""
        try:
            if state is None or state.vector_id != vector_id:
                raise InvalidInputError("Compute a map for this vector first, then choose cells.")
            cells = [state.cell(k) for k in keys or []]
            if not cells or len(cells) > 4:
                raise InvalidInputError("Choose one to four cells of the map.")
            if not (prompt or "").strip():
                raise InvalidInputError("Type a prompt first.")
            tokens = float(max_tokens) if max_tokens is not None else math.nan
            if not tokens.is_integer():
                raise InvalidInputError(
                    f"Max new tokens must be a whole number, got {max_tokens!r}."
                )
            generation = GenerationSettings(max_new_tokens=int(tokens))
        except (SteerSwarmError, TypeError, ValueError) as exc:
            yield gr.update(), fmt.failed("compare", str(exc))
            return
        names = ["unsteered"] + [view.cell_name(c) for c in cells]

        def work(current: Current, emit: Any) -> Any:
            vector = self._vector(current, vector_id)
            settings = [()] + [(cell_vector(current.steerer, vector, c),) for c in cells]
            for replies in compare_completions(
                current.steerer, settings, prompt, generation, self._cancel.is_set
            ):
                emit(replies)
            return self._cancel.is_set()

        replies: list[str] = [""] * len(names)
        for kind, item in self._job("compare", work):
            if kind == "status":
                yield gr.update(), item
            elif kind == "item":
                replies = item
                yield [list(p) for p in zip(names, replies)], "Writing the completions…"
            else:
                done = "✕ Cancelled." if item else "✓ Done."
                yield [list(p) for p in zip(names, replies)], done

    # -- inspector -----------------------------------------------------------

    def inspect(self, vector_id: str | None) -> Iterator[tuple[Any, ...]]:
        """(norm plot, cosine table, logit-lens table, status)."""
        keep = (gr.update(),) * 3

        def work(current: Current, _emit: Any) -> Any:
            vector = self._vector(current, vector_id)
            return vector, inspect_vector(current.steerer, vector)

        for kind, item in self._job("inspect the vector", work):
            if kind == "status":
                yield (*keep, item)
            elif kind == "done":
                vector, found = item
                rows, headers = view.cosine_rows(found.cosines)
                yield (
                    view.norm_bars(found.norms, vector.layer),
                    gr.update(value=rows, headers=headers),
                    view.lens_rows(found.lens),
                    "✓ Inspected: norms recaptured at every layer, cosines of the active "
                    "vectors (in the Steering tab's order), and the tokens the direction "
                    "pushes up and down.",
                )


@dataclass
class ExploreTab:
    """The components, for wiring and tests."""

    vector: gr.Dropdown
    refresh: gr.Button
    measure: gr.Radio
    scan: gr.Button
    scan_plot: gr.Plot
    layer_range: gr.State
    use_range: gr.Button
    layers: gr.Textbox
    strengths: gr.Textbox
    neutral: gr.Number
    run_map: gr.Button
    cancel: gr.Button
    map_plot: gr.Plot
    map_table: gr.Dataframe
    map_state: gr.State
    cell: gr.Dropdown
    apply: gr.Button
    compare_cells: gr.Dropdown
    prompt: gr.Textbox
    max_tokens: gr.Number
    compare: gr.Button
    compare_table: gr.Dataframe
    inspect: gr.Button
    norm_plot: gr.Plot
    cosine_table: gr.Dataframe
    lens_table: gr.Dataframe
    status: gr.Markdown


def build(actions: ExploreActions) -> ExploreTab:
    """Lay the tab out and wire its own handlers (the range button's target,
    the Optimize form, is wired by `ui.app`)."""
    with gr.Row():
        vector = gr.Dropdown(label="Vector", choices=[], scale=4, elem_id="explore-vector")
        refresh = gr.Button("Refresh vectors", scale=1)
    status = gr.Markdown(
        "Choose a vector, then scan its layers or compute its map.", elem_id="explore-status"
    )
    with gr.Accordion("1 · Layer scan", open=True):
        measure = gr.Radio(
            [(label, key) for key, label in SCAN_MEASURES.items()], value=DPRIME, label="Measure"
        )
        with gr.Row():
            scan = gr.Button("Scan layers", variant="primary", elem_id="explore-scan")
            use_range = gr.Button(
                "Use range in Optimize", interactive=False, elem_id="explore-use-range"
            )
        scan_plot = gr.Plot(label="Separation per layer", elem_id="explore-scan-plot")
        layer_range = gr.State(None)
    with gr.Accordion("2 · Layer × strength map", open=True):
        with gr.Row():
            layers = gr.Textbox(
                label="Layers (blank: 10 spread over the model)", placeholder="e.g. 2, 5, 8"
            )
            strengths = gr.Textbox(
                label="Strengths (× the layer's mean activation norm)",
                value=", ".join(f"{s:g}" for s in DEFAULT_STRENGTHS),
            )
            neutral = gr.Number(value=DEFAULT_NEUTRAL, precision=0, label="Neutral sentences (KL)")
        with gr.Row():
            run_map = gr.Button("Compute map", variant="primary", elem_id="explore-map")
            cancel = gr.Button("Cancel", variant="stop")
        map_plot = gr.Plot(label="Map", elem_id="explore-map-plot")
        map_table = gr.Dataframe(headers=CELL_HEADERS, label="Cells", interactive=False)
        map_state = gr.State(None)
        with gr.Row():
            cell = gr.Dropdown(label="Cell", choices=[], scale=4)
            apply = gr.Button("Apply this cell", scale=1, elem_id="explore-apply")
    with gr.Accordion("3 · Side by side", open=True):
        with gr.Row():
            compare_cells = gr.Dropdown(
                label="Cells (up to 4)", choices=[], multiselect=True, scale=3
            )
            max_tokens = gr.Number(value=48, precision=0, label="Max new tokens", scale=1)
        prompt = gr.Textbox(label="Prompt", value=DEFAULT_PROMPT)
        compare = gr.Button("Write completions", variant="primary", elem_id="explore-compare")
        compare_table = gr.Dataframe(
            headers=COMPARE_HEADERS, label="Completions", interactive=False, wrap=True,
            elem_id="explore-compare-table",
        )
    with gr.Accordion("4 · Vector inspector", open=True):
        inspect = gr.Button("Inspect vector", elem_id="explore-inspect")
        norm_plot = gr.Plot(label="Norm per layer", elem_id="explore-norm-plot")
        with gr.Row():
            cosine_table = gr.Dataframe(
                label="Cosine similarity of the active vectors", interactive=False
            )
            lens_table = gr.Dataframe(headers=LENS_HEADERS, label="Logit lens", interactive=False)
    tab = ExploreTab(
        vector, refresh, measure, scan, scan_plot, layer_range, use_range, layers, strengths,
        neutral, run_map, cancel, map_plot, map_table, map_state, cell, apply, compare_cells,
        prompt, max_tokens, compare, compare_table, inspect, norm_plot, cosine_table,
        lens_table, status,
    )
    _wire(actions, tab)
    return tab


def _wire(actions: ExploreActions, tab: ExploreTab) -> None:
    tab.refresh.click(
        actions.vector_choices, [tab.vector], [tab.vector], api_name="explore_vectors"
    )
    tab.scan.click(
        actions.scan, [tab.vector, tab.measure],
        [tab.scan_plot, tab.layer_range, tab.use_range, tab.status], api_name="explore_scan",
    )
    tab.run_map.click(
        actions.map, [tab.vector, tab.layers, tab.strengths, tab.neutral],
        [tab.map_plot, tab.map_table, tab.map_state, tab.cell, tab.compare_cells, tab.status],
        api_name="explore_map",
    )
    tab.cancel.click(actions.cancel, None, [tab.status], api_name="explore_cancel")
    tab.apply.click(
        actions.apply, [tab.vector, tab.cell, tab.map_state], [tab.vector, tab.status],
        api_name="explore_apply_cell",
    )
    tab.compare.click(
        actions.compare,
        [tab.vector, tab.compare_cells, tab.prompt, tab.max_tokens, tab.map_state],
        [tab.compare_table, tab.status], api_name="explore_compare",
    )
    tab.inspect.click(
        actions.inspect,
        [tab.vector],
        [tab.norm_plot, tab.cosine_table, tab.lens_table, tab.status],
        api_name="explore_inspect",
    )
