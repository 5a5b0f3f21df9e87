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

from optimize import OBJECTIVES
from optimize.config.table import BY_NAME, FORM, Field, fields
from optimize.run.settings import FORM_NAMES, RunSettings, default_layer_range
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
    ("limit", "batch_size", "particles", "iterations", "budget"),
    ("layer_min", "layer_max", "unit"),
    ("strength_min", "strength_max", "alpha_min", "alpha_max"),
)
_FOLDED = ("c1", "c2", "w", "seed")
_LAST_ROW = ("heldout_task", "heldout_limit", "workers")
_SPLIT_ROW = ("holdout_fraction", "confirm_fraction", "finalists", "significance")
_GUARD_ROW = ("objective", "kl_budget", "guard_task", "max_guard_drop")
_WIDE = {"heldout_task": 2}
LAID_OUT = (*sum(_ROWS, ()), *_FOLDED, *_LAST_ROW, *_SPLIT_ROW, *_GUARD_ROW)  # covers NAMES

# Fields that apply only with one unit: the other unit's bounds are not sent.
_UNIT_FIELDS = {"alpha": ("alpha_min", "alpha_max"), "strength": ("strength_min", "strength_max")}


@dataclass(frozen=True)
class RunRequest:
    """Everything "Optimize vectors" was given, validated: the chosen vectors
    (by id) and the run's settings."""

    vector_ids: tuple[str, ...]
    settings: RunSettings


def _given(form: dict[str, Any]) -> dict[str, Any]:
    """The form's values as run settings: only those that apply (the bounds
    of the chosen unit; the held-out limit with a held-out task; none of the
    task fields for concept strength), numbers as numbers, an emptied text
    field as none."""
    unit = form.get("unit", "")
    if unit is None:  # a radio left empty; a caller may leave it out
        raise InvalidInputError("Choose the unit of the searched range: strength or alpha.")
    skipped: set[str] = set()
    for other, names in _UNIT_FIELDS.items():
        if other != (unit or "alpha"):
            skipped.update(names)
    heldout = form.get("heldout_task")
    if not (isinstance(heldout, str) and heldout.strip()):
        skipped.add("heldout_limit")
    if form.get("objective") == "concept":
        skipped.update(("task", "task_folder", "metric", "heldout_task", "heldout_limit"))
    given: dict[str, Any] = {}
    for name, value in form.items():
        if name in skipped or name not in BY_NAME:
            continue
        f = BY_NAME[name]
        if f.kind is str:
            if value is not None and not isinstance(value, str):
                raise InvalidInputError(f"{f.noun} must be text, got {validate.typed(value)}.")
            given[name] = value
        elif name == "workers" and value in (None, ""):
            given[name] = 0
        else:
            value = validate.given(f.label, value)
            given[name] = value
    given.setdefault("unit", "alpha")
    return given


def parse_request(
    choices: list[str] | None, *values: Any, sources: AllowedTaskSources | None = None
) -> RunRequest:
    """Check the form (its values in the order of NAMES; trailing ones may be
    left out: the table's defaults) before anything touches the model. The
    task folder must be one of `sources` (default: the shipped tasks, or
    lm-eval's registered tasks): a visitor never picks a folder of code to
    run. The concept objective reads no task field: it scores one vector's
    own held-out prompts.

    Raises:
        InvalidInputError: with a message naming the field (TaskSourceError
            for a task folder that is not allowed).
    """
    form = dict(zip(NAMES, values, strict=False))  # trailing values may be left out
    chosen = tuple(choices or ())
    if not chosen:
        raise InvalidInputError(
            "Select at least one vector to optimize (add one in the Steering tab first)."
        )
    if not all(isinstance(choice, str) and choice for choice in chosen):
        raise InvalidInputError(f"Unknown vector in {list(chosen)!r}; refresh the tab.")
    settings = RunSettings.from_values(
        _given(form), sources=sources or AllowedTaskSources(), naming=FORM_NAMES
    )
    settings.check_vectors(len(chosen))
    return RunRequest(chosen, settings)


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
    for row in (_LAST_ROW, _SPLIT_ROW, _GUARD_ROW):
        with gr.Row(elem_classes=[FORM_ROW]):
            built.update({name: _component(BY_NAME[name], values[name], sources) for name in row})
    for name, component in built.items():
        settings.remember(component, BY_NAME[name].saved_key)
    return {name: built[name] for name in NAMES}
