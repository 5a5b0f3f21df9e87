"""The Steering tab: make vectors from prompts, list, remove, reset, save and load them.

`SteeringActions` holds the handlers; each returns (or yields) the values of
the outputs named in `SteeringTab`. Handlers that use the model are
generators: they say so in the status line while they wait for the model lock.
A refused action leaves the active vectors exactly as they were.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from optimize.scoring.task_sources import AllowedTaskSources
from presets import load_preset
from steering.budget import WorkEstimate, check_reads, estimate_reads
from steering.capture import capture, split_prompts
from steering.errors import SteerSwarmError
from steering.extract import VectorSource
from steering.gguf import load_vector_file
from steering.models import ModelInfo
from steering.session import Current, ModelSession
from steering.store import save_vectors
from steering.vector import check_layer
from ui import compat, format as fmt, gguf_panel, task_vector_panel
from ui.files import plain_file_name, upload_path
from ui.jobs import JobRegistry
from ui.model_access import Facts, VectorView, locked, model_facts, peek_facts
from ui.model_jobs import CAPTURE, STEERING_KINDS, ModelJobs, busy, changed_vectors, vector_views
from ui.settings import FormSettings
from ui.task_vector_panel import (
    ALPHA,
    UNIT_CHOICES,
    check_coefficient,
    describe_coefficient,
    with_coefficient,
)

log = logging.getLogger(__name__)

TABLE_HEIGHT_PX = 220  # about five vectors; more scroll
DEFAULT_FILE_NAME = "steering-vectors.safetensors"
DEFAULT_ALPHA = 1.0
# The one advice of the README, the example preset, the search and Explore,
# measured on SmolLM2 (docs/app.md "Where and how hard"): a layer about a
# quarter of the way in, alpha about 1 (strength about 0.1).
ALPHA_HINT = (
    "H + alpha × V; negative steers away. Start near 1 (about strength 0.1, the unit "
    "below; the table shows both): replies turn toward the concept and still end; from "
    "about strength 0.2 they may run on to the token limit."
)
LAYER_SHARE = 0.27  # of the model's layers: 8 of SmolLM2's 30


def default_layer(num_layers: int) -> int:
    """The layer a vector starts at: about a quarter of the way in (8 of
    SmolLM2's 30, the example's layer), where the demo's search lands
    (layers 7-8) and inside the search's default range (a tenth to 60 %)."""
    return min(num_layers - 1, round(num_layers * LAYER_SHARE))


@dataclass
class SteeringTab:
    """The components of the tab, for wiring by other tabs and tests."""

    model_line: gr.Markdown
    concept: gr.Textbox
    contrast: gr.Textbox
    layer: gr.Number
    alpha: gr.Number
    unit: gr.Radio
    add: gr.Button
    example: gr.Button
    table: gr.Dataframe
    remove_choice: gr.Dropdown
    remove: gr.Button
    reset: gr.Button
    file_name: gr.Textbox
    save: gr.Button
    saved_file: gr.File
    load_file: gr.File
    load: gr.Button
    status: gr.Markdown
    gguf: gguf_panel.GgufPanel
    from_task: task_vector_panel.TaskVectorPanel
    cancel: gr.Button | None = None
    go_on: gr.Button | None = None
    replace: gr.Checkbox | None = None


class SteeringActions:
    """The Steering tab's handlers, bound to one model session and the app's
    jobs (a capture is one: one at a time, estimated, cancellable anywhere)."""

    def __init__(
        self, session: ModelSession, save_dir: Path | None = None, jobs: JobRegistry | None = None
    ) -> None:
        self.session = session
        self.save_dir = save_dir
        self.jobs = ModelJobs(session, jobs)

    # -- helpers -----------------------------------------------------------

    def locked(self, action: str, work: Callable[[Current], str]) -> Iterator[VectorView]:
        """`work(current)` under the model lock (ui.model_access.locked)."""
        return locked(self.session, action, work)

    def model_facts(self) -> Facts:
        """(model facts, active vectors, problem) for building the tab."""
        return model_facts(self.session)

    def model_line(self, info: ModelInfo | None, problem: str = "") -> str:
        """Which model is steered, and what happened at the last model change
        (the vectors kept or dropped), so that a change noticed while
        refreshing is still reported."""
        line = fmt.model_line(info, problem)
        change = self.session.last_change
        return f"{line}  \nℹ {fmt.md(change)}" if change else line

    # -- handlers ----------------------------------------------------------

    def refresh(self) -> tuple[Any, Any, Any, Any]:
        """(model line, layer slider update, table, dropdown) for the model in use now.

        Does not wait: while the model is busy it shows the vectors the user
        made active, read without the lock (left as it is only before any
        model was used).
        """
        facts = peek_facts(self.session, self.model_facts)
        if facts is None:
            return gr.update(), gr.update(), gr.update(), gr.update()
        info, vectors, problem = facts
        if info is None:
            return (
                self.model_line(None, problem),
                gr.update(info="No model is loaded."),
                [],
                gr.update(choices=[]),
            )
        return (
            self.model_line(info),
            gr.update(maximum=info.num_layers - 1, info=_layer_info(info)),
            fmt.vector_rows(vectors),
            gr.update(choices=fmt.vector_choices(vectors), value=None),
        )

    def add_vector(
        self,
        concept: str | None,
        contrast: str | None,
        layer: Any,
        alpha: Any,
        unit: str | None = ALPHA,
    ) -> Iterator[VectorView]:
        """Capture a vector from the prompts and add it; `alpha` is a raw
        alpha, or a strength when `unit` is "strength". A job of the app:
        estimated first (a long one waits for **Go on**), cancellable from
        any page, its progress shown; the active vectors change only at the
        end."""
        action = "add the steering vector"
        prompts = split_prompts(concept)
        contrast_prompts = split_prompts(contrast)
        try:  # everything typed is checked before a job starts
            source = VectorSource.from_prompts(prompts, contrast_prompts)
            check_coefficient(alpha, unit)
        except SteerSwarmError as exc:
            yield gr.update(), gr.update(), fmt.failed(action, str(exc))
            return

        def plan(current: Current) -> WorkEstimate:
            check_layer(layer, current.steerer.info.num_layers)
            return estimate_reads(current.steerer, [source])

        def work(current: Current, _emit: Any, _control: Any) -> VectorView:
            steerer = current.steerer
            vector = with_coefficient(capture(steerer, source, layer, 1.0), alpha, unit)
            steerer.add(vector)
            count = len(steerer.vectors)
            made_from = f"{len(prompts)} concept prompt{'s' if len(prompts) != 1 else ''}"
            if contrast_prompts:
                made_from += f" minus {len(contrast_prompts)} contrast prompt" + (
                    "s" if len(contrast_prompts) != 1 else ""
                )
            return changed_vectors(self.session, current, (
                f"✓ Added vector #{count}: layer {vector.layer}, {describe_coefficient(vector)}, "
                f"from {made_from}. {fmt.vector_count(count)}"
            ))

        job = self.jobs.start("Capturing a vector", CAPTURE, plan, work)
        if job is None:
            yield gr.update(), gr.update(), busy(self.jobs.registry.running)
            return
        yield from vector_views(job, action)

    def attach(self) -> Iterator[VectorView]:
        """For a page that (re)loads: the vectors and the status line as the
        server has them now; while a capture (or another job that changes
        the vectors) runs, its progress live, then its outcome."""
        job = self.jobs.attachable(STEERING_KINDS)
        if job is None:
            yield gr.update(), gr.update(), self.status_line()
            return
        yield from vector_views(job, "change the vectors")  # ends with its outcome

    def status_line(self) -> str:
        """The status line from the server's state: how many vectors the user
        made active, that the model is busy and with what, or why there is no
        model. Never waits for the model."""
        facts = peek_facts(self.session, self.model_facts)
        busy_line = self.jobs.registry.busy_line()
        if facts is None:
            return busy_line or ""
        info, vectors, problem = facts
        line = fmt.vector_count(len(vectors)) if info is not None else f"⚠ {fmt.md(problem)}"
        return f"{line}  \n{busy_line}" if busy_line else line

    def cancel(self) -> str:
        """Cancel the app's running job (a capture, a map, an optimization...)."""
        return self.jobs.cancel()

    def go_on(self) -> str:
        """Answer the running job's question: run it although it is long."""
        return self.jobs.go_on()

    def remove_vector(self, vector_id: str | None) -> Iterator[VectorView]:
        """Remove the vector whose id the dropdown holds."""

        def work(current: Current) -> str:
            steerer = current.steerer
            if not vector_id:
                return fmt.failed("remove a vector", "Choose the vector to remove first.")
            ids = [vector.id for vector in steerer.vectors]
            if vector_id not in ids:
                return fmt.failed(
                    "remove a vector",
                    "The list of active vectors changed; choose the vector again.",
                )
            number = ids.index(vector_id) + 1
            removed = steerer.remove(vector_id)
            return (
                f"✓ Removed vector #{number} (layer {removed.layer}, "
                f"{fmt.md(removed.summary(40))}). {fmt.vector_count(len(steerer.vectors))}"
            )

        yield from self.locked("remove the vector", work)

    def reset_vectors(self) -> Iterator[VectorView]:
        def work(current: Current) -> str:
            count = len(current.steerer.vectors)
            current.steerer.reset()
            return f"✓ Removed all {count} steering vector(s): the model is unsteered."

        yield from self.locked("reset the steering vectors", work)

    def save_vectors(
        self, file_name: str | None, replace: bool = False
    ) -> Iterator[tuple[Any, str]]:
        """Write the active vectors to a file offered for download. A file of
        the same name is replaced only when `replace` is ticked (a save
        silently overwrote one)."""
        try:
            name = plain_file_name(file_name, ".safetensors")
        except ValueError as exc:
            yield gr.update(), fmt.failed("save the vectors", str(exc))
            return
        saved: list[Path] = []

        def work(current: Current) -> str:
            if self.save_dir is None:
                self.save_dir = Path(tempfile.mkdtemp(prefix="steerswarm-"))
            if not replace and (self.save_dir / name).exists():
                return (
                    f"⚠ Could not save the vectors: a file called {fmt.md(name)} is already "
                    "saved. Tick **Replace a file of the same name** to replace it, or choose "
                    "another name. Nothing was changed."
                )
            path = save_vectors(
                self.save_dir / name, current.steerer.vectors, current.steerer.info,
                replace=bool(replace),
            )
            saved.append(path)
            count = len(current.steerer.vectors)
            return f"✓ Saved {count} vector(s) to {fmt.md(path)} — download it below."

        for _table, _choices, status in self.locked("save the vectors", work):
            yield (gr.update(value=str(saved[0]), visible=True) if saved else gr.update()), status

    def load_example(self, name: str = "sentiment") -> tuple[Any, Any, Any, Any, str]:
        """(concept, contrast, layer, alpha, status): the preset's prompts
        and capture settings put in the form. Changes no vector: the user
        then clicks "Add steering vector". Does not wait for the model."""
        try:
            preset = load_preset(name)
        except SteerSwarmError as exc:
            keep = gr.update()
            return keep, keep, keep, keep, fmt.failed("load the example", str(exc))
        layer, note = preset.layer, ""
        info = (peek_facts(self.session, self.model_facts) or (None,))[0]  # busy: no check, no wait
        if info is not None and layer >= info.num_layers:
            layer = info.num_layers - 1
            note = (
                f" {fmt.md(info.name)} has no layer {preset.layer}: layer {layer} is filled in "
                "(the search picks the layer anyway)."
            )
        if info is not None and info.name != preset.model:
            note += f" The example was measured on {preset.model}, not {fmt.md(info.name)}."
        return (
            preset.concept_text,
            preset.contrast_text,
            layer,
            preset.alpha,
            (
                f"✓ Filled in the example “{preset.title}”: {len(preset.concept)} concept "
                f"and {len(preset.contrast)} contrast prompts, layer {layer}, alpha "
                f"{preset.alpha:g}. Click **Add steering vector**, then on the Optimize "
                "tab **Use example settings** and **Optimize vectors**." + note
            ),
        )

    def load_vectors(self, file: Any) -> Iterator[VectorView]:
        """Replace the active vectors with the ones in an uploaded file: a
        steerswarm vector file, or a llama.cpp / repeng GGUF control vector."""
        path = upload_path(file)

        def work(current: Current) -> str:
            if path is None:
                return fmt.failed(
                    "load vectors", "Choose a vector file (.safetensors or .gguf) first."
                )
            steerer = current.steerer
            vectors, loaded = load_vector_file(path, steerer.info)
            check_reads(steerer, vectors)  # prompts and answers within the caps for this model
            before = len(steerer.vectors)
            steerer.set_vectors(vectors)
            return (
                f"✓ {fmt.md(loaded)} They replace the {before} that were active. "
                f"{fmt.vector_count(len(vectors))}"
            )

        yield from self.locked("load the vectors", work)


def _layer_info(info: ModelInfo) -> str:
    return (
        f"{info.name} has layers 0 to {info.num_layers - 1}; start near "
        f"{default_layer(info.num_layers)} (about a quarter of the way in)"
    )


def build(
    actions: SteeringActions,
    settings: FormSettings | None = None,
    sources: AllowedTaskSources | None = None,
) -> SteeringTab:
    """Lay out the tab inside the current Blocks context and wire its events.

    `settings` gives the layer and alpha to start with and remembers
    the ones the user enters; `sources` are the task folders "From a task"
    offers (None: the shipped tasks and lm-eval's registered tasks)."""
    settings = settings or FormSettings()
    info, vectors, problem = actions.model_facts()
    num_layers = info.num_layers if info is not None else 32
    start_layer = min(max(settings.get("layer", default_layer(num_layers)), 0), num_layers - 1)
    model_line = gr.Markdown(actions.model_line(info, problem))
    with gr.Row():
        with gr.Column(scale=3):
            concept = gr.Textbox(
                label="Concept prompts",
                lines=4,
                placeholder=(
                    "One prompt per line, e.g.\nI am so happy today!\nWhat a wonderful surprise."
                ),
            )
            contrast = gr.Textbox(
                label="Contrast prompts",
                lines=4,
                placeholder="Optional, one per line: the opposite of the concept, e.g.\n"
                "I am so sad today.\nWhat a terrible loss.",
            )
        with gr.Column(scale=2):
            # A number box, not a slider: a slider silently clamps a typed -1
            # or 1000 to its ends and the vector went to a layer nobody chose.
            # Gradio refuses a number outside minimum/maximum, and the handler
            # refuses a fraction (check_layer), so nothing is clamped.
            layer = gr.Number(
                minimum=0,
                maximum=max(num_layers - 1, 1),
                value=start_layer,
                step=1,
                label="Layer",
                info=_layer_info(info) if info is not None else "load a model to see its layers",
            )
            alpha = gr.Number(
                value=settings.get("alpha", DEFAULT_ALPHA),
                label="Alpha",
                info=ALPHA_HINT,
            )
            unit = gr.Radio(choices=UNIT_CHOICES, value=ALPHA, label="Coefficient unit")
            add = gr.Button("Add steering vector", variant="primary")
            with gr.Row():
                example = gr.Button("Load example", size="sm")
                # Any page's Cancel stops the app's running job; Go on is the
                # one answer to a long job's question (never the button that
                # started it).
                cancel = gr.Button("Cancel", size="sm", variant="stop", elem_id="steering-cancel")
                go_on = gr.Button("Go on", size="sm", elem_id="steering-go-on")
    status = gr.Markdown(
        fmt.vector_count(len(vectors)) if info is not None else f"⚠ {fmt.md(problem)}",
        elem_id="steering-status",
    )
    table = gr.Dataframe(
        value=fmt.vector_rows(vectors),
        headers=fmt.VECTOR_HEADERS,
        label="Active steering vectors",
        interactive=False,
        elem_id="active-vectors",
        wrap=True,
        column_widths=["5%", "7%", "9%", "9%", "32%", "28%", "10%"],
        **compat.table_height(TABLE_HEIGHT_PX),
    )
    with gr.Row():
        remove_choice = gr.Dropdown(
            choices=fmt.vector_choices(vectors),
            value=None,
            label="Vector to remove",
            scale=3,
        )
        remove = gr.Button("Remove vector", scale=1)
        reset = gr.Button("Reset steering vectors", variant="stop", scale=1)
    # The rarer actions, folded: files, the llama.cpp / lm-eval export, a
    # vector from a task (each its own section below the table).
    with gr.Accordion("Save or load vector files", open=False), gr.Row():
        with gr.Column():
            file_name = gr.Textbox(value=DEFAULT_FILE_NAME, label="File name")
            replace = gr.Checkbox(value=False, label="Replace a file of the same name")
            save = gr.Button("Save vectors")
            saved_file = gr.File(label="Saved vector file", interactive=False, visible=False)
        with gr.Column():
            load_file = gr.File(
                label="Vector file to load (.safetensors, or a .gguf control vector)",
                file_types=[".safetensors", ".gguf"],
                type="filepath",
                height=150,
            )
            load = gr.Button("Load vectors")

    gguf_actions = gguf_panel.GgufActions(actions.session, actions.save_dir)
    gguf = gguf_panel.build(gguf_actions, file_name, status)

    view = [table, remove_choice, status]
    from_task = task_vector_panel.build(
        task_vector_panel.TaskVectorActions(actions.session, sources, actions.jobs.registry),
        start_layer,
        view,
    )

    settings.remember(layer, "layer")
    settings.remember(alpha, "alpha")
    add.click(
        actions.add_vector, [concept, contrast, layer, alpha, unit], view, api_name="add_vector",
        concurrency_limit=None,  # a second page is told at once that the model is busy
    )
    example.click(
        actions.load_example,
        None,
        [concept, contrast, layer, alpha, status],
        api_name="load_example",
    )
    remove.click(actions.remove_vector, [remove_choice], view, api_name="remove_vector")
    reset.click(actions.reset_vectors, None, view, api_name="reset_vectors")
    save.click(
        actions.save_vectors, [file_name, replace], [saved_file, status], api_name="save_vectors"
    )
    cancel.click(actions.cancel, None, [status], api_name="cancel_job", concurrency_limit=None)
    go_on.click(actions.go_on, None, [status], api_name="go_on_job", concurrency_limit=None)
    load.click(actions.load_vectors, [load_file], view, api_name="load_vectors")
    return SteeringTab(
        model_line=model_line,
        concept=concept,
        contrast=contrast,
        layer=layer,
        alpha=alpha,
        unit=unit,
        add=add,
        example=example,
        table=table,
        remove_choice=remove_choice,
        remove=remove,
        reset=reset,
        file_name=file_name,
        save=save,
        saved_file=saved_file,
        load_file=load_file,
        load=load,
        status=status,
        gguf=gguf,
        from_task=from_task,
        cancel=cancel,
        go_on=go_on,
        replace=replace,
    )
