"""The Steering tab's "From a task" panel: a vector from an lm-eval
multiple-choice task (the task-pairs method of steering.extract.task_pairs),
with its coefficient given as a raw alpha or as a strength.

A panel of its own (built inside the Steering tab) so the tab stays small.
The task comes from the sources the operator allowed
(optimize/scoring/task_sources.py): a dropdown of folders and a task name, never a
typed path, because lm-eval runs the Python a task folder holds.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import gradio as gr

from optimize.scoring.task_sources import AllowedTaskSources
from steering import validate
from steering.budget import WorkEstimate, estimate_reads
from steering.capture import capture
from steering.errors import InvalidInputError, SteerSwarmError
from steering.extract.task_pairs import DEFAULT_DOCS
from steering.limits import MAX_TASK_ITEMS
from steering.lm_eval_tasks import task_source
from steering.session import Current, ModelSession
from steering.vector import SteeringVector, check_alpha, check_layer
from ui import format as fmt
from ui.jobs import JobRegistry
from ui.model_access import VectorView
from ui.model_jobs import TASK_VECTOR, ModelJobs, busy, changed_vectors, vector_views

# The units a coefficient may be given in: (label, value). The values are the
# identifiers; the labels avoid the word "alpha" so the main form's Alpha
# field keeps a unique label.
ALPHA, STRENGTH = "alpha", "strength"
UNIT_CHOICES = [("raw (H + value × V)", ALPHA), ("strength (× the layer's mean norm)", STRENGTH)]
# Task vectors are short (|V| about 4-6 on SmolLM2 against 12-21 for prompt
# vectors), so a raw alpha means little for them: they start in strength.
DEFAULT_TASK_STRENGTH = 0.25
DEFAULT_TASK = "steer_sentiment"
# See docs/files.md "Strength": measured on SmolLM2 (scripts/vectors_table.py).
STRENGTH_HINT = (
    "Strength = |alpha × V| / the mean norm of the hidden states entering the layer "
    "(100 neutral sentences): the same push at every layer and for every vector. On "
    "SmolLM2 a joy vector read cheerful and fluent at 0.25-0.5 and repeated at 1; the "
    "guard's KL budget is reached near 0.3-0.4."
)


def check_coefficient(value: Any, unit: str | None) -> tuple[float, str]:
    """(value, unit) checked before any model work: a finite alpha within a
    vector's limit, or a finite strength (its alpha is checked once the
    vector's norm is known). InvalidInputError otherwise."""
    unit = ALPHA if unit is None else unit  # "" is a choice of none: refused
    if unit == ALPHA:
        return check_alpha(value), unit
    if unit == STRENGTH:
        return validate.number("Strength", value), unit
    raise InvalidInputError(
        f"The unit must be {ALPHA!r} or {STRENGTH!r}, got {validate.typed(unit)}."
    )


def with_coefficient(vector: SteeringVector, value: Any, unit: str | None) -> SteeringVector:
    """`vector` with `value` as its alpha, or as its strength when `unit` is
    STRENGTH (InvalidInputError for an unknown unit or a bad value)."""
    value, unit = check_coefficient(value, unit)
    return vector.with_alpha(value) if unit == ALPHA else vector.with_strength(value)


def describe_coefficient(vector: SteeringVector) -> str:
    """"alpha 4.6 (strength 0.5)" for status lines."""
    strength = vector.strength
    return f"alpha {vector.alpha:.3g}" + (
        "" if strength is None else f" (strength {strength:.3g})"
    )


@dataclass
class TaskVectorPanel:
    """The panel's components, for tests and wiring."""

    folder: gr.Dropdown
    task: gr.Textbox
    docs: gr.Number
    layer: gr.Number
    coefficient: gr.Number
    unit: gr.Radio
    add: gr.Button


class TaskVectorActions:
    """The panel's handler, bound to one model session, the task sources the
    operator allowed and the app's jobs (building a task vector is one)."""

    def __init__(
        self,
        session: ModelSession,
        sources: AllowedTaskSources | None = None,
        jobs: JobRegistry | None = None,
    ) -> None:
        self.session = session
        self.sources = sources or AllowedTaskSources.default()
        self.jobs = ModelJobs(session, jobs)

    def add_from_task(
        self,
        folder: str | None,
        task: str | None,
        docs: Any,
        layer: Any,
        coefficient: Any,
        unit: str | None = STRENGTH,
    ) -> Iterator[VectorView]:
        """Build a task-pairs vector from `docs` documents of `task` in the
        allowed `folder` and add it at `layer` with `coefficient` in `unit`.
        Everything is checked before the model runs; a refusal adds nothing.
        A job of the app: estimated from the answers it reads, cancellable."""
        action = "add the task vector"
        try:
            include_path = self.sources.include_path(folder)
            name = (task or "").strip()
            if not name:
                raise InvalidInputError("Enter the name of a multiple-choice task.")
            count = validate.whole("The number of documents", docs, 1, MAX_TASK_ITEMS)
            check_coefficient(coefficient, unit)
        except SteerSwarmError as exc:
            yield gr.update(), gr.update(), fmt.failed(action, str(exc))
            return
        sources: list[Any] = []

        def plan(current: Current) -> WorkEstimate:
            check_layer(layer, current.steerer.info.num_layers)
            sources.append(task_source(name, include_path, count))  # lm-eval's data, no model
            return estimate_reads(current.steerer, sources)

        def work(current: Current, _emit: Any, _control: Any) -> VectorView:
            steerer, source = current.steerer, sources[0]
            vector = with_coefficient(capture(steerer, source, layer, 1.0), coefficient, unit)
            steerer.add(vector)
            return changed_vectors(self.session, current, (
                f"✓ Added vector #{len(steerer.vectors)} from {fmt.md(source.describe())}: "
                f"layer {vector.layer}, {describe_coefficient(vector)}. Those documents are "
                "left out of every score while it is active. "
                f"{fmt.vector_count(len(steerer.vectors))}"
            ))

        job = self.jobs.start("Building a task vector", TASK_VECTOR, plan, work)
        if job is None:
            yield gr.update(), gr.update(), busy(self.jobs.registry.running)
            return
        yield from vector_views(job, action)


def build(
    actions: TaskVectorActions, start_layer: int, view: list[Any]
) -> TaskVectorPanel:
    """Lay the panel out (folded) in the current Blocks context; `view` is
    the Steering tab's [table, remove choice, status] it updates."""
    with gr.Accordion("From a task", open=False):
        gr.Markdown(
            "A vector from an lm-eval **multiple-choice** task: for each document, the "
            "hidden state at the correct answer minus the one at each wrong answer, "
            "averaged. The documents come from the task's training split, else a seeded "
            "slice reserved for building, and are never scored while the vector is active."
        )
        with gr.Row():
            folder = gr.Dropdown(
                choices=actions.sources.choices(),
                value=actions.sources.first(),
                label="Task source",
                scale=2,
            )
            task = gr.Textbox(value=DEFAULT_TASK, label="Task name", scale=1)
            docs = gr.Number(value=DEFAULT_DOCS, precision=0, label="Documents")
        with gr.Row():
            layer = gr.Number(value=start_layer, precision=0, label="Task vector layer")
            coefficient = gr.Number(value=DEFAULT_TASK_STRENGTH, label="Coefficient")
            unit = gr.Radio(
                choices=UNIT_CHOICES, value=STRENGTH, label="Coefficient unit", info=STRENGTH_HINT
            )
        add = gr.Button("Add vector from task", variant="primary")
    add.click(
        actions.add_from_task,
        [folder, task, docs, layer, coefficient, unit],
        view,
        api_name="add_task_vector",
        concurrency_limit=None,  # a second page is told at once that the model is busy
    )
    return TaskVectorPanel(folder, task, docs, layer, coefficient, unit, add)
