"""The Explore tab: see where and how hard one vector steers before searching.

Four tools for the vector chosen by its id: the layer scan, the layer x
strength map, side-by-side completions at chosen map cells, and the vector
inspector. Every model use is a job of the app (ui/model_jobs.py): estimated
before it starts, cancelled by any page's **Cancel** within seconds (the map
after its current row, a reply at its next token, a capture within a layer),
and followed again by a page that reloads meanwhile. Nothing changes the
active vectors except **Apply this cell**.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import gradio as gr

from steering.budget import (
    WorkEstimate,
    duration,
    estimate_map,
    estimate_moves,
    estimate_reads,
    estimate_replies,
    map_texts,
)
from steering.errors import InvalidInputError, SteerSwarmError
from steering.explore import (
    DPRIME,
    SCAN_MEASURES,
    compare_completions,
    inspect_vector,
    scan_vector,
)
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
from steering.generate import GenerationSettings
from steering.neutral import neutral_sentences
from steering.progress import JobControl
from steering.session import Current, ModelSession
from ui import explore_view as view, format as fmt, glossary
from ui.jobs import BackgroundJob, JobRegistry
from ui.model_access import peek_facts
from ui.model_jobs import (
    APPLY_CELL,
    COMPARE,
    INSPECT,
    MAP,
    SCAN,
    ModelJobs,
    PlanOf,
    WorkOf,
    busy,
    changed_vectors,
    follow_status,
)

log = logging.getLogger(__name__)

Emit = Callable[[Any], None]
Event = tuple[str, Any]
CELL_HEADERS = ["Layer", "Strength", "Alpha", "Gain (nats/token)", "KL (nats/token)"]
COMPARE_HEADERS = ["Setting", "Completion"]
LENS_HEADERS = ["Promoted", "Logit", "Suppressed", "Logit"]
DEFAULT_PROMPT = "Describe your morning in two sentences."
MAP_NOTE = glossary.note(("strength", "KL", "nats per token"))
# What the scan is worth as advice, measured (docs/explore.md, scripts/scan_vs_search.py).
SCAN_IS_INFORMATION = (
    "This describes the prompts, not where steering helps: on SmolLM2 the layer the search "
    "picked lay outside this window in most runs measured (docs/explore.md), so the "
    "Optimize tab's own layer range is the better start."
)
LENS_NOTE = (
    "<small>The tokens the vector's direction pushes up and down when it is read through "
    "the model's output layer. They are pieces of words: ␣ marks a leading space (␣joy is "
    "the word “joy”), a piece without one continues a word (“ful”). Look for a theme among "
    "them, not for single words.</small>"
)


class ExploreActions:
    """The Explore tab's handlers, bound to one model session and the app's
    jobs: every tool is a job (one at a time, estimated, cancellable from any
    page, with its own cancel event), and a page that reloads while one runs
    follows it again (`attach`)."""

    def __init__(self, session: ModelSession, jobs: JobRegistry | None = None) -> None:
        self.session = session
        self.jobs = ModelJobs(session, jobs)

    # -- plumbing ------------------------------------------------------------

    def _start(
        self, title: str, kind: str, plan: PlanOf, work: WorkOf
    ) -> BackgroundJob | str:
        """The started job, or the line saying the model is busy."""
        job = self.jobs.start(title, kind, plan, work)
        return busy(self.jobs.registry.running) if job is None else job

    @staticmethod
    def _vector(current: Current, vector_id: str | None) -> Any:
        if not vector_id:
            raise InvalidInputError("Choose a vector first (add one in the Steering tab).")
        return current.steerer.find(vector_id)

    def cancel(self) -> str:
        """Cancel the app's running job (this tab's, or any other)."""
        return self.jobs.cancel()

    def go_on(self) -> str:
        """Answer the running job's question: run it although it is long."""
        return self.jobs.go_on()

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

    def attach(self) -> Iterator[tuple[Any, ...]]:
        """For a page that (re)loads while an Explore job runs: that job's
        view, live, then its outcome, in every output of the tab (ATTACHED
        order); otherwise nothing changes but the status line."""
        job = self.jobs.attachable(_EXPLORE_KINDS)
        if job is None:
            busy_line = self.jobs.registry.busy_line()
            yield _spread((busy_line or gr.update(),), (12,))
            return
        watch, slots = self._watchers()[job.kind]
        for values in watch(job):
            yield _spread(values, slots)

    def _watchers(self) -> dict[str, tuple[Watcher, tuple[int, ...]]]:
        """Each kind of job's view, and where its outputs sit in ATTACHED."""
        return {
            SCAN: (self._watch_scan, (0, 1, 2, 12)),
            MAP: (self._watch_map, (3, 4, 5, 6, 7, 12)),
            COMPARE: (self._watch_compare, (8, 12)),
            INSPECT: (self._watch_inspect, (9, 10, 11, 12)),
            APPLY_CELL: (self._watch_apply, (13, 12)),
        }

    # -- layer scan ----------------------------------------------------------

    def scan(self, vector_id: str | None, measure: str | None) -> Iterator[tuple[Any, ...]]:
        """(plot, range state, use-range button, status)."""
        measure = measure or DPRIME

        def plan(current: Current) -> WorkEstimate:
            vector = self._vector(current, vector_id)
            lists = [vector.prompts, vector.contrast_prompts] if vector.contrast_prompts else []
            return estimate_reads(current.steerer, [vector.source], lists)

        def work(current: Current, _emit: Any, _control: Any) -> Any:
            return scan_vector(current.steerer, self._vector(current, vector_id), measure)

        job = self._start("Scanning the layers", SCAN, plan, work)
        if isinstance(job, str):
            yield (*(gr.update(),) * 3, job)
            return
        yield from self._watch_scan(job)

    @staticmethod
    def _watch_scan(job: BackgroundJob) -> Iterator[tuple[Any, ...]]:
        keep = (gr.update(),) * 3
        for kind, item in follow_status(job, "scan the layers"):
            if kind == "status":
                yield (*keep, item)
            elif kind == "done":
                best = item.scores[item.best]
                yield (
                    view.scan_bars(item, SCAN_MEASURES[item.measure]),
                    (item.low, item.high),
                    gr.update(interactive=True),
                    (
                        f"✓ Layers **{item.low}–{item.high}** separate the concept and contrast "
                        f"prompts most (highest mean separation); the best single layer is "
                        f"{item.best} ({best:.2f}). {SCAN_IS_INFORMATION}"
                    ),
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
        neutral_texts = neutral_sentences(count=count)  # spread over the file's topics

        def grid_of(current: Current) -> MapGrid:
            steerer = current.steerer
            return MapGrid(layer_list or default_layers(steerer.info.num_layers), strength_list)

        def plan(current: Current) -> WorkEstimate:
            vector, grid = self._vector(current, vector_id), grid_of(current)
            return estimate_map(
                current.steerer, vector, grid.layers, grid.strengths, neutral_texts
            )

        def work(current: Current, emit: Any, control: JobControl) -> Any:
            vector, grid = self._vector(current, vector_id), grid_of(current)
            steerer = current.steerer
            concept, contrast = map_texts(vector)
            scorer = StrengthMap(steerer, concept, contrast, neutral_texts)
            cells: list[MapCell] = []
            emit(MapState(vector.id, grid, ()))
            direction_at = _DirectionAt(steerer, vector)
            for row in scorer.rows(grid, direction_at, control.cancel.is_set):
                cells.extend(row)
                emit(MapState(vector.id, grid, tuple(cells)))
            return control.cancelled and len(cells) < grid.cells

        job = self._start("Computing the map", MAP, plan, work)
        if isinstance(job, str):
            yield (*keep, job)
            return
        yield from self._watch_map(job)

    def map_estimate(
        self, vector_id: str | None, layers: str | None, strengths: str | None, neutral: Any
    ) -> str:
        """What "Compute map" would do and about how long it takes, said before
        it starts: the cells, the layers and strengths (chosen for you when
        the fields are blank), and the estimate of the job it would start
        (steering/budget.py). Nothing when the model is busy or the fields do
        not parse (the map's own check says why when clicked)."""
        try:
            layer_list = view.numbers(layers, "Layers", int)
            strength_list = view.numbers(strengths, "Strengths", float) or DEFAULT_STRENGTHS
            count = int(neutral) if neutral is not None and float(neutral).is_integer() else -1
        except (SteerSwarmError, TypeError, ValueError):
            return ""
        lock: Any = self.session.lock  # a lock, or the webui's context manager
        acquire = getattr(lock, "acquire", None)  # never wait: the estimate is a courtesy
        if not vector_id or acquire is None or not acquire(blocking=False):
            return ""
        try:
            current = self.session.current()
            steerer = current.steerer
            chosen = layer_list or default_layers(steerer.info.num_layers)
            vector = steerer.find(vector_id)
            texts = neutral_sentences(count=max(1, min(count, len(neutral_sentences()))))
            estimate = estimate_map(steerer, vector, chosen, strength_list, texts)
        except SteerSwarmError:
            return ""
        finally:
            lock.release()
        picked = "" if layer_list else " (chosen for you: spread over the model)"
        cells = len(chosen) * len(strength_list)
        return (
            f"The map scores {cells} cell{'' if cells == 1 else 's'}: layers "
            f"{', '.join(str(n) for n in chosen)}{picked} × strengths "
            f"{', '.join(f'{x:g}' for x in strength_list)}. About "
            f"{duration(estimate.seconds)} on this machine (from its measured speed); "
            "**Cancel** stops it after the current row."
        )

    def _watch_map(self, job: BackgroundJob) -> Iterator[tuple[Any, ...]]:
        keep = (gr.update(),) * 5
        state = None
        for kind, item in follow_status(job, "compute the map"):
            if kind == "status":
                yield (*keep, item) if state is None else (*self._map_view(state), item)
            elif kind == "item":
                state = item
                yield (*self._map_view(state), f"Computing the map: {self._count(state)}…")
            elif state is not None:
                word = "✕ Cancelled" if item else "✓ Done"
                yield (*self._map_view(state), f"{word}: {self._count(state)}.")

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

        def plan(current: Current) -> WorkEstimate:
            return estimate_moves(current.steerer, [(self._vector(current, vector_id), cell.layer)])

        def work(current: Current, _emit: Any, _control: Any) -> Any:
            moved = apply_cell(current.steerer, vector_id, cell)
            return changed_vectors(self.session, current, (
                f"✓ The vector is now at layer {moved.layer} with alpha {moved.alpha:.4g} "
                f"(strength {cell.strength:g})."
            ))

        job = self._start("Applying the cell", APPLY_CELL, plan, work)
        if isinstance(job, str):
            yield gr.update(), job
            return
        yield from self._watch_apply(job)

    def _watch_apply(self, job: BackgroundJob) -> Iterator[tuple[Any, str]]:
        for kind, item in follow_status(job, "apply the cell"):
            if kind == "status":
                yield gr.update(), item
            elif kind == "done":
                yield self.vector_choices(), item[2]

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
            text = prompt or ""
            if not text.strip():
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

        def plan(current: Current) -> WorkEstimate:
            vector = self._vector(current, vector_id)
            moves = [(vector, c.layer) for c in cells]
            return estimate_replies(current.steerer, len(names), int(tokens), moves)

        def work(current: Current, emit: Any, control: JobControl) -> Any:
            vector = self._vector(current, vector_id)
            settings = [()] + [(cell_vector(current.steerer, vector, c),) for c in cells]
            for replies in compare_completions(
                current.steerer, settings, text, generation, cancel=control.cancel
            ):
                emit(_Replies(names, tuple(replies)))
            return control.cancelled

        job = self._start("Writing the completions", COMPARE, plan, work)
        if isinstance(job, str):
            yield gr.update(), job
            return
        yield from self._watch_compare(job)

    @staticmethod
    def _watch_compare(job: BackgroundJob) -> Iterator[tuple[Any, str]]:
        rows: list[list[str]] = []
        for kind, item in follow_status(job, "compare"):
            if kind == "status":
                yield (rows or gr.update()), item
            elif kind == "item":
                rows = [list(pair) for pair in zip(item.names, item.replies, strict=True)]
                yield rows, "Writing the completions…"
            else:
                yield (rows or gr.update()), "✕ Cancelled." if item else "✓ Done."

    # -- inspector -----------------------------------------------------------

    def inspect(self, vector_id: str | None) -> Iterator[tuple[Any, ...]]:
        """(norm plot, cosine table, logit-lens table, status)."""

        def plan(current: Current) -> WorkEstimate:
            return estimate_reads(current.steerer, [self._vector(current, vector_id).source])

        def work(current: Current, _emit: Any, _control: Any) -> Any:
            vector = self._vector(current, vector_id)
            return vector, inspect_vector(current.steerer, vector)

        job = self._start("Inspecting the vector", INSPECT, plan, work)
        if isinstance(job, str):
            yield (*(gr.update(),) * 3, job)
            return
        yield from self._watch_inspect(job)

    @staticmethod
    def _watch_inspect(job: BackgroundJob) -> Iterator[tuple[Any, ...]]:
        keep = (gr.update(),) * 3
        for kind, item in follow_status(job, "inspect the vector"):
            if kind == "status":
                yield (*keep, item)
            elif kind == "done":
                vector, found = item
                rows, headers = view.cosine_rows(found.cosines)
                yield (
                    view.norm_bars(found.norms, vector.layer),
                    gr.update(value=rows, headers=headers),
                    view.lens_rows(found.lens),
                    ("✓ Inspected: norms recaptured at every layer, cosines of the active "
                     "vectors (in the Steering tab's order), and the tokens the direction "
                     "pushes up and down."),
                )


@dataclass(frozen=True)
class _Replies:
    """The side-by-side replies so far, with the names of their settings (a
    reattached page has no names of its own)."""

    names: list[str]
    replies: tuple[str, ...]


class _DirectionAt:
    """The vector's direction at a layer (its own method, from the kept
    activations); a class, not a lambda, so the map's loop binds nothing."""

    def __init__(self, steerer: Any, vector: Any) -> None:
        self.steerer, self.vector = steerer, vector

    def __call__(self, layer: int) -> Any:
        return self.vector.source.direction(self.steerer, layer)


_EXPLORE_KINDS = (SCAN, MAP, COMPARE, INSPECT, APPLY_CELL)
# How a kind of job is shown: its events as the values of its own outputs.
Watcher = Callable[[BackgroundJob], Iterator[tuple[Any, ...]]]

# Where each output of a reattached page sits (ExploreTab.attached_outputs order):
# scan plot, range, use range | map plot, table, state, cell, compare cells |
# compare table | norm plot, cosines, lens | status | vector choice.
_ATTACHED = 14


def _spread(values: tuple[Any, ...], slots: tuple[int, ...]) -> tuple[Any, ...]:
    """`values` put at `slots` of the attached outputs, gr.update() elsewhere."""
    out: list[Any] = [gr.update()] * _ATTACHED
    for value, slot in zip(values, slots, strict=True):
        out[slot] = value
    return tuple(out)


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
    go_on: gr.Button | None = None
    map_plan: gr.Markdown | None = None  # what the map would do, and its estimate

    def attached_outputs(self) -> list[Any]:
        """What `ExploreActions.attach` fills, in its order."""
        return [
            self.scan_plot, self.layer_range, self.use_range, self.map_plot, self.map_table,
            self.map_state, self.cell, self.compare_cells, self.compare_table, self.norm_plot,
            self.cosine_table, self.lens_table, self.status, self.vector,
        ]


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
        gr.Markdown(
            "How much the vector raises its concept (gain) against how far it moves everyday "
            f"text (KL), at each layer and strength. <small>{MAP_NOTE}</small>"
        )
        with (
            gr.Accordion("Choose the layers and strengths (chosen for you)", open=False),
            gr.Row(),
        ):
            layers = gr.Textbox(
                label="Layers (blank: 10 spread over the model)", placeholder="e.g. 2, 5, 8"
            )
            strengths = gr.Textbox(
                label="Strengths (× the layer's mean activation norm)",
                value=", ".join(f"{s:g}" for s in DEFAULT_STRENGTHS),
            )
            neutral = gr.Number(value=DEFAULT_NEUTRAL, precision=0, label="Neutral sentences (KL)")
        map_plan = gr.Markdown("", elem_id="explore-map-plan")
        with gr.Row():
            run_map = gr.Button("Compute map", variant="primary", elem_id="explore-map")
            cancel = gr.Button("Cancel", variant="stop", elem_id="explore-cancel")
            go_on = gr.Button("Go on", elem_id="explore-go-on")
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
            elem_id="explore-compare-table", column_widths=["22%", "78%"],
        )  # fixed widths: a long completion was clipped at the right edge
    with gr.Accordion("4 · Vector inspector", open=True):
        inspect = gr.Button("Inspect vector", elem_id="explore-inspect")
        norm_plot = gr.Plot(label="Norm per layer", elem_id="explore-norm-plot")
        with gr.Row():
            cosine_table = gr.Dataframe(
                label="Cosine similarity of the active vectors", interactive=False
            )
            with gr.Column():
                gr.Markdown(LENS_NOTE)
                lens_table = gr.Dataframe(
                    headers=LENS_HEADERS, label="Logit lens", interactive=False
                )
    tab = ExploreTab(
        vector, refresh, measure, scan, scan_plot, layer_range, use_range, layers, strengths,
        neutral, run_map, cancel, map_plot, map_table, map_state, cell, apply, compare_cells,
        prompt, max_tokens, compare, compare_table, inspect, norm_plot, cosine_table,
        lens_table, status, go_on, map_plan,
    )
    _wire(actions, tab)
    return tab


def _wire(actions: ExploreActions, tab: ExploreTab) -> None:
    tab.refresh.click(
        actions.vector_choices, [tab.vector], [tab.vector], api_name="explore_vectors"
    )
    sized: list[Any] = [tab.vector, tab.layers, tab.strengths, tab.neutral]
    if tab.map_plan is not None:  # the map's plan and estimate, before it starts
        for component in sized:
            component.change(
                actions.map_estimate, sized, [tab.map_plan], api_name=False, queue=False,
                show_progress="hidden",
            )
    # No concurrency limit on the job buttons: a second page's click is told
    # at once that the model is busy rather than queued behind the first job.
    scanned = tab.scan.click(
        actions.scan, [tab.vector, tab.measure],
        [tab.scan_plot, tab.layer_range, tab.use_range, tab.status], api_name="explore_scan",
        concurrency_limit=None,
    )
    mapped = tab.run_map.click(
        actions.map, [tab.vector, tab.layers, tab.strengths, tab.neutral],
        [tab.map_plot, tab.map_table, tab.map_state, tab.cell, tab.compare_cells, tab.status],
        api_name="explore_map", concurrency_limit=None,
    )
    if tab.map_plan is not None:
        # The estimate says nothing while the model is busy (it never waits),
        # so one asked for while a job held the model stays blank: ask again
        # once the job has let the model go.
        for event in (scanned, mapped):
            event.then(actions.map_estimate, sized, [tab.map_plan], api_name=False,
                       show_progress="hidden")
    tab.cancel.click(
        actions.cancel, None, [tab.status], api_name="explore_cancel", concurrency_limit=None
    )
    if tab.go_on is not None:
        tab.go_on.click(
            actions.go_on, None, [tab.status], api_name="explore_go_on", concurrency_limit=None
        )
    tab.apply.click(
        actions.apply, [tab.vector, tab.cell, tab.map_state], [tab.vector, tab.status],
        api_name="explore_apply_cell", concurrency_limit=None,
    )
    tab.compare.click(
        actions.compare,
        [tab.vector, tab.compare_cells, tab.prompt, tab.max_tokens, tab.map_state],
        [tab.compare_table, tab.status], api_name="explore_compare", concurrency_limit=None,
    )
    tab.inspect.click(
        actions.inspect,
        [tab.vector],
        [tab.norm_plot, tab.cosine_table, tab.lens_table, tab.status],
        api_name="explore_inspect", concurrency_limit=None,
    )
