"""The Optimize tab's form, built from the run settings table
(optimize/config/table.py), and the check of what it was given.

Each form field's label, starting value and info text come from the table;
only the layout (which fields share a row) is decided here. The fields carry
no Gradio minimum/maximum: Gradio would refuse an out-of-range number with
its own pop-up before our handler runs, and the run's own check gives a
better message in the status line (the bounds are in the table and checked
by FitnessConfig, SearchSpace and PsoConfig).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from optimize import OBJECTIVES, FitnessConfig, PsoConfig, SearchSpace
from optimize.scoring.concept import CONCEPT_METRIC, CONCEPT_TASK
from optimize.config.guard import NAMES as GUARD_NAMES
from optimize.config.guard import GuardSettings
from optimize.run.optimization import check_heldout
from optimize.config.table import BY_NAME, FORM, Field, fields
from optimize.scoring.task_sources import SHIPPED_TASKS, AllowedTaskSources
from steering import validate
from steering.errors import InvalidInputError
from steering.models import ModelInfo
from ui.settings import FormSettings
from ui.style import FORM_ROW

TASKS_DIR = SHIPPED_TASKS

FORM_FIELDS: tuple[Field, ...] = fields(FORM)
NAMES: tuple[str, ...] = tuple(f.name for f in FORM_FIELDS)

# The layout: rows of fields, the PSO options folded away, wide text fields.
_ROWS = (
    ("task", "task_folder", "metric"),
    ("limit", "first_round", "batch_size", "particles", "iterations"),
    ("layer_min", "layer_max", "unit"),
    ("strength_min", "strength_max", "alpha_min", "alpha_max"),
)
_FOLDED = ("c1", "c2", "w", "seed")
_LAST_ROW = ("heldout_task", "heldout_limit", "workers")
_GUARD_ROW = GUARD_NAMES  # the split, the objective and the capability guard
_WIDE = {"heldout_task": 2}
LAID_OUT = (*sum(_ROWS, ()), *_FOLDED, *_LAST_ROW, *_GUARD_ROW)  # a test checks it covers NAMES


@dataclass(frozen=True)
class RunRequest:
    """Everything "Optimize vectors" was given, validated."""

    vector_ids: tuple[str, ...]
    fitness: FitnessConfig
    space: SearchSpace
    pso: PsoConfig
    heldout: FitnessConfig | None = None
    workers: int = 0  # Ray workers (optimize/workers/ray.py); 0: score in this process
    guard: GuardSettings = GuardSettings()
    first_round: int = 0  # documents of a first round (optimize/run/first_round.py); 0: none


def default_layer_range(num_layers: int) -> tuple[int, int]:
    """About the second quarter to the middle of the model, where steering works best."""
    low = min(num_layers - 1, round(num_layers * 0.25))
    high = max(low, min(num_layers - 1, round(num_layers * 0.6)))
    return low, high


def _whole(name: str, form: dict[str, Any], minimum: int | None = None) -> int:
    """A whole number from a gr.Number (which may give a float or None),
    within the settings table's maximum."""
    label = BY_NAME[name].label
    value = validate.given(label, form.get(name))
    return BY_NAME[name].capped(validate.whole(label, value, minimum))


def _guard(form: dict[str, Any]) -> GuardSettings:
    """The split, objective and guard fields (those left out: the table's defaults)."""
    values = {}
    for name in GUARD_NAMES:
        if name in form:  # an emptied number field is refused, an emptied text is "none"
            value = form[name]
            f = BY_NAME[name]
            values[name] = value if f.kind is str else validate.given(f.label, value)
    return GuardSettings.from_values(values)


def parse_request(
    choices: list[str] | None, *values: Any, sources: AllowedTaskSources | None = None
) -> RunRequest:
    """Check the form (its values in the order of NAMES; the held-out, split
    and guard ones may be left out: the table's defaults) before anything
    touches the model. An empty held-out task means no held-out scoring (its
    limit is then not used). The task folder must be one of `sources`
    (default: the shipped tasks, or lm-eval's registered tasks): a visitor
    never picks a folder of code to run. The concept objective reads no task
    field: it scores one vector's own held-out prompts.

    Raises:
        InvalidInputError: with a message naming the field (TaskSourceError
            for a task folder that is not allowed).
    """
    form = dict(zip(NAMES, values))
    chosen = tuple(choices or ())
    if not chosen:
        raise InvalidInputError(
            "Select at least one vector to optimize (add one in the Steering tab first)."
        )
    if not all(isinstance(choice, str) and choice for choice in chosen):
        raise InvalidInputError(f"Unknown vector in {list(chosen)!r}; refresh the tab.")
    guard = _guard(form)
    if guard.scores_task:
        folder = (sources or AllowedTaskSources()).include_path(form.get("task_folder"))
        task, metric = form.get("task") or "", form.get("metric") or ""
    else:  # concept strength scores the vector's own prompts: the task fields are not read
        folder, task, metric = None, CONCEPT_TASK, CONCEPT_METRIC
    fitness = FitnessConfig(
        task=task,
        include_path=folder,
        metric=metric,
        limit=_whole("limit", form),
        batch_size=_whole("batch_size", form),
    )
    if form.get("unit", "") is None:  # a radio left empty; a caller may leave it out
        raise InvalidInputError("Choose the unit of the searched range: strength or alpha.")
    space = SearchSpace(
        _whole("layer_min", form), _whole("layer_max", form), form.get("alpha_min"),
        form.get("alpha_max"), unit=form.get("unit") or "alpha",
        strength_min=form.get("strength_min", BY_NAME["strength_min"].default),
        strength_max=form.get("strength_max", BY_NAME["strength_max"].default),
    )  # fmt: skip
    pso = PsoConfig(
        particles=_whole("particles", form),
        iterations=_whole("iterations", form),
        c1=form.get("c1"),
        c2=form.get("c2"),
        w=form.get("w"),
        seed=_whole("seed", form),
    )
    if not isinstance(form.get("heldout_task") or "", str):
        raise InvalidInputError(f"The held-out task must be text, got {form['heldout_task']!r}.")
    heldout_task = (form.get("heldout_task") or "").strip()
    workers = 0 if form.get("workers") in (None, "") else _whole("workers", form, minimum=0)
    if not guard.scores_task:
        guard.check_concept(len(chosen), bool(heldout_task), workers)
    heldout = None
    if heldout_task:
        heldout = FitnessConfig(
            task=form["heldout_task"],
            include_path=folder,
            metric=fitness.metric,
            limit=_whole("heldout_limit", form, minimum=1),
            batch_size=fitness.batch_size,
        )
        check_heldout(fitness, heldout)
    guard.guard_config(fitness)  # the guard task is not the search task
    first_round = 0 if form.get("first_round") in (None, "") else _whole("first_round", form, 0)
    guard.check_first_round(fitness, first_round)  # under the limit, and a task run
    return RunRequest(chosen, fitness, space, pso, heldout, workers, guard, first_round)


def starting_values(
    settings: FormSettings, info: ModelInfo | None, sources: AllowedTaskSources
) -> dict[str, Any]:
    """Each field's first value: the saved one, else the table's default, else
    what the table calls derived (the first allowed task folder, a layer range
    inside the loaded model, no held-out task, the held-out limit = the limit).
    Saved layers are kept inside the loaded model; a saved task folder that
    is no longer allowed gives way to the first allowed one."""
    low, high = default_layer_range(info.num_layers) if info is not None else (0, 0)
    derived = {
        "task_folder": sources.first(),
        "layer_min": low,
        "layer_max": high,
        "heldout_task": "",
        "guard_task": "",
        "heldout_limit": settings.get(BY_NAME["limit"].saved_key),
    }
    values = {f.name: settings.get(f.saved_key, derived.get(f.name)) for f in FORM_FIELDS}
    if values["task_folder"] not in [value for _label, value in sources.choices()]:
        values["task_folder"] = sources.first()
    if info is not None:
        for name in ("layer_min", "layer_max"):
            values[name] = min(max(values[name], 0), info.num_layers - 1)
    return values


def _component(f: Field, value: Any, sources: AllowedTaskSources) -> gr.components.Component:
    if f.name == "task_folder":  # only folders the operator allowed, never typed in
        return gr.Dropdown(
            choices=sources.choices(), value=value, label=f.label, info=f.help, scale=2
        )
    if f.name == "objective":  # the registered objectives (optimize/guard/objective.py)
        return gr.Dropdown(choices=sorted(OBJECTIVES), value=value, label=f.label, info=f.help)
    if f.choices is not None:
        return gr.Radio(choices=list(f.choices), value=value, label=f.label, info=f.help)
    if f.kind is str:
        return gr.Textbox(value=value, label=f.label, info=f.help, scale=_WIDE.get(f.name))
    precision = 0 if f.kind is int else None
    return gr.Number(value=value, precision=precision, label=f.label, info=f.help)


def build_form(
    settings: FormSettings, info: ModelInfo | None, sources: AllowedTaskSources
) -> dict[str, gr.components.Component]:
    """Lay the fields out in the current Blocks context; remember what the user
    enters. Returns the components by setting name, in the order of NAMES."""
    values = starting_values(settings, info, sources)
    built: dict[str, gr.components.Component] = {}
    for row in _ROWS:
        with gr.Row(elem_classes=[FORM_ROW]):
            built.update({name: _component(BY_NAME[name], values[name], sources) for name in row})
    with gr.Accordion("PSO options", open=False), gr.Row(elem_classes=[FORM_ROW]):
        built.update({name: _component(BY_NAME[name], values[name], sources) for name in _FOLDED})
    with gr.Row(elem_classes=[FORM_ROW]):
        built.update({name: _component(BY_NAME[name], values[name], sources) for name in _LAST_ROW})
    with gr.Row():
        built.update({name: _component(BY_NAME[name], values[name], sources) for name in _GUARD_ROW})
    for name, component in built.items():
        settings.remember(component, BY_NAME[name].saved_key)
    return {name: built[name] for name in NAMES}
