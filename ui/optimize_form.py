"""The Optimize tab's form, built from the run settings table
(optimize/config/table.py), and the check of what it was given.

Up front are the choices every run needs: what "better" means (a task of
the chosen folder, or concept strength: the `task` field, whose choices add
CONCEPT) and how long the run may take (the time budget). Everything else is
in one folded "Advanced" section, grouped as the table groups it, showing
only the fields that apply to the chosen goal, unit, objective and strategy.
`applies` is that one rule: it decides what the form shows and what it sends
to the run, so a hidden field never changes a run.

Each field's label, starting value and info text come from the table; only
the layout is decided here. The fields carry no Gradio minimum/maximum:
Gradio would refuse an out-of-range number with its own pop-up before our
handler runs, and the run's own check gives a better message in the status
line (the bounds are in the table and checked by RunSettings).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import gradio as gr

from optimize import STRATEGIES
from optimize.config.table import BY_NAME, FORM, Field, fields
from optimize.run.settings import FORM_NAMES, RunSettings, default_layer_range
from optimize.scoring.documents import folder_tasks
from optimize.scoring.task_sources import SHIPPED_TASKS, AllowedTaskSources
from steering import validate
from steering.errors import InvalidInputError
from steering.models import ModelInfo
from ui import glossary
from ui.settings import FormSettings
from ui.style import FORM_ROW

TASKS_DIR = SHIPPED_TASKS

FORM_FIELDS: tuple[Field, ...] = fields(FORM)
NAMES: tuple[str, ...] = tuple(f.name for f in FORM_FIELDS)

# The value of the goal "concept strength" among the task choices: not a name
# lm-eval uses (its names are letters, digits and _ . - , : +), so it never
# stands for a task.
CONCEPT = "@concept"
CONCEPT_LABEL = "Concept strength: no task, the vector's own prompts"
# The objectives a task run chooses between (concept strength is a goal of its own).
TASK_OBJECTIVES = (
    ("guarded: the best score whose replies stay close to the unsteered model's", "guarded"),
    ("target: the best score, whatever it costs", "target"),
)
STRATEGY_LABELS = {
    "pso": "particle swarm (pso)",
    "tpe": "Optuna TPE (tpe)",
    "cmaes": "Optuna CMA-ES (cmaes)",
}

# Up front: the goal and the time budget (the vectors and the button are the
# layout's). The rest, under Advanced, by the table's groups.
UP_FRONT = ("task", "budget")
GROUP_ROWS: tuple[tuple[str, str, tuple[tuple[str, ...], ...]], ...] = (
    ("task", "Task and documents",
     (("task_folder", "metric", "limit", "batch_size"),)),
    ("swarm", "The search",
     (("strategy", "particles", "iterations", "seed"), ("c1", "c2", "w", "velocity_limit"))),
    ("search space", "Where and how hard to steer",
     (("layer_min", "layer_max", "unit"),
      ("strength_min", "strength_max", "alpha_min", "alpha_max"))),
    ("held-out", "Checking the pick on documents the search did not rank",
     (("heldout_task", "heldout_limit", "holdout_fraction"),
      ("confirm_fraction", "finalists", "significance"))),
    ("guard", "Side effects",
     (("objective", "kl_budget", "guard_task", "max_guard_drop"),)),
    ("workers", "Ray workers", (("workers",),)),
)
# A note under a group's title, on the words its fields use.
GROUP_NOTES = {
    "task": "The task's documents are split with the seed: search documents rank every "
    "setting, confirmation documents score the best few again, held-out documents check the "
    "pick once at the end.",
    "search space": glossary.note(("strength", "alpha")),
    "held-out": glossary.note(("confirmation documents", "held-out documents", "p")),
    "guard": glossary.note(("KL", "objective")),
}
LAID_OUT = (*UP_FRONT, *(n for _g, _t, rows in GROUP_ROWS for row in rows for n in row))
_WIDE = {"heldout_task": 2, "task_folder": 2}

# What each setting needs to apply (see `applies`).
_TASK_ONLY = frozenset({
    "task_folder", "metric", "limit", "heldout_task", "heldout_limit", "confirm_fraction",
    "finalists", "significance", "objective", "guard_task", "max_guard_drop", "workers",
})
_UNIT_FIELDS = {"alpha": ("alpha_min", "alpha_max"), "strength": ("strength_min", "strength_max")}
_PSO_ONLY = frozenset({"c1", "c2", "w", "velocity_limit"})
# Read by `applies`: a change of one of these may show or hide fields.
DECIDING = ("task", "budget", "unit", "strategy", "heldout_task", "objective", "guard_task")


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def is_concept(form: Mapping[str, Any]) -> bool:
    """Whether the form asks for concept strength: the goal CONCEPT (or, from
    a caller that names the objective itself, the objective "concept")."""
    return form.get("task") == CONCEPT or form.get("objective") == "concept"


def _budgeted(value: Any) -> bool:
    try:
        return float(value) > 0
    except (TypeError, ValueError):
        return False


def applies(name: str, form: Mapping[str, Any]) -> bool:
    """Whether the setting `name` takes part in the run the form describes:
    the task's fields only with a task; the bounds of the chosen unit; the
    swarm's coefficients only for pso; the iterations only without a time
    budget (the budget decides them); the held-out limit only with a held-out
    task and the held-out share only without one (or for concept strength,
    where it is the share of the vector's prompts held out); the KL budget
    unless the objective is the target alone; the guard task with the
    guarded objective and its drop only with a guard task."""
    concept = is_concept(form)
    if concept and name in _TASK_ONLY:
        return False
    unit = form.get("unit") or "alpha"
    for other, names in _UNIT_FIELDS.items():
        if name in names:
            return other == unit
    if name in _PSO_ONLY:
        return (form.get("strategy") or "pso") == "pso"
    if name == "iterations":
        return not _budgeted(form.get("budget"))
    if name == "heldout_limit":
        return bool(_text(form.get("heldout_task")))
    if name == "holdout_fraction":
        return concept or not _text(form.get("heldout_task"))
    objective = form.get("objective") or "guarded"
    if name == "kl_budget":
        return concept or objective != "target"
    if name == "guard_task":
        return objective == "guarded"
    if name == "max_guard_drop":
        return objective == "guarded" and bool(_text(form.get("guard_task")))
    return True


def shown(name: str, form: Mapping[str, Any]) -> bool:
    """Whether the form shows `name`: where it applies, and the task folder
    always (it lists the tasks the goal offers)."""
    return name == "task_folder" or applies(name, form)


@dataclass(frozen=True)
class RunRequest:
    """Everything "Optimize" was given, validated: the chosen vectors (by
    id) and the run's settings."""

    vector_ids: tuple[str, ...]
    settings: RunSettings


def _given(form: dict[str, Any]) -> dict[str, Any]:
    """The form's values as run settings: only those that apply (`applies`),
    numbers as numbers, an emptied text field as none; the goal CONCEPT as
    the objective "concept"."""
    if "unit" in form and form["unit"] is None:  # a radio left empty
        raise InvalidInputError("Choose the unit of the searched range: strength or alpha.")
    concept = is_concept(form)
    given: dict[str, Any] = {"objective": "concept"} if concept else {}
    for name, value in form.items():
        if name not in BY_NAME or not applies(name, form) or name in given:
            continue
        if name == "task" and concept:  # the goal CONCEPT: no task
            continue
        f = BY_NAME[name]
        if f.kind is str:
            if value is not None and not isinstance(value, str):
                raise InvalidInputError(f"{f.noun} must be text, got {validate.typed(value)}.")
            given[name] = value
        elif name == "workers" and value in (None, ""):
            given[name] = 0
        else:
            given[name] = validate.given(f.label, value)
    given.setdefault("unit", "alpha")
    return given


def form_values(values: tuple[Any, ...]) -> dict[str, Any]:
    """The form's values by setting name (given in the order of NAMES;
    trailing ones may be left out: the table's defaults)."""
    return dict(zip(NAMES, values, strict=False))  # trailing values may be left out


def parse_settings(
    values: tuple[Any, ...], sources: AllowedTaskSources | None = None
) -> RunSettings:
    """The run settings the form's `values` (in the order of NAMES) give, or
    InvalidInputError naming the field."""
    return RunSettings.from_values(
        _given(form_values(values)), sources=sources or AllowedTaskSources(), naming=FORM_NAMES
    )


def parse_request(
    choices: list[str] | None, *values: Any, sources: AllowedTaskSources | None = None
) -> RunRequest:
    """Check the form (its values in the order of NAMES; trailing ones may be
    left out: the table's defaults) before anything touches the model. The
    task folder must be one of `sources` (default: the shipped tasks, or
    lm-eval's registered tasks): a visitor never picks a folder of code to
    run. Concept strength reads no task field: it scores one vector's own
    held-out prompts.

    Raises:
        InvalidInputError: with a message naming the field (TaskSourceError
            for a task folder that is not allowed).
    """
    chosen = tuple(choices or ())
    if not chosen:
        raise InvalidInputError(
            "Select at least one vector to optimize (add one in the Steering tab first)."
        )
    if not all(isinstance(choice, str) and choice for choice in chosen):
        raise InvalidInputError(f"Unknown vector in {list(chosen)!r}; refresh the tab.")
    settings = parse_settings(values, sources)
    settings.check_vectors(len(chosen))
    return RunRequest(chosen, settings)


def goal_choices(folder: str | None) -> list[tuple[str, str]]:
    """What "better" can mean: each task of the task folder (lm-eval's
    registered tasks are typed by name instead: there are thousands), then
    concept strength."""
    return [(name, name) for name in folder_tasks(folder)] + [(CONCEPT_LABEL, CONCEPT)]


def starting_values(
    settings: FormSettings, info: ModelInfo | None, sources: AllowedTaskSources
) -> dict[str, Any]:
    """Each field's first value: the saved one, else the table's default, else
    what the table calls derived (the first allowed task folder, a layer range
    inside the loaded model, no held-out task, the held-out limit = the limit).
    Saved layers are kept inside the loaded model; a saved task folder that
    is no longer allowed gives way to the first allowed one; a saved
    objective "concept" becomes the goal CONCEPT."""
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
    if values["objective"] == "concept":
        values["task"], values["objective"] = CONCEPT, BY_NAME["objective"].default
    if values["strategy"] not in STRATEGIES:
        values["strategy"] = BY_NAME["strategy"].default
    if info is not None:
        for name in ("layer_min", "layer_max"):
            values[name] = min(max(values[name], 0), info.num_layers - 1)
    return values


def _component(
    f: Field, value: Any, sources: AllowedTaskSources, form: Mapping[str, Any]
) -> gr.components.Component:
    visible = shown(f.name, form)
    if f.name == "task":  # the goal: a task of the folder, typed for lm-eval's, or concept
        return gr.Dropdown(
            choices=goal_choices(form.get("task_folder")), value=value,
            label="What “better” means", allow_custom_value=True, scale=2,
            info="a task (its score is what the search raises; the Advanced section has its "
            "folder), or concept strength: no task, the vector's own held-out prompts",
            elem_id="optimize-goal",
        )
    if f.name == "task_folder":  # only folders the operator allowed, never typed in
        return gr.Dropdown(
            choices=sources.choices(), value=value, label=f.label, info=f.help, scale=2,
            visible=visible,
        )
    if f.name == "objective":
        return gr.Radio(
            choices=list(TASK_OBJECTIVES), value=value, label=f.label, visible=visible,
            info="how a setting's side effects count (KL: how far its replies move from the "
            "unsteered model's; see the Side effects note)",
        )
    if f.name == "strategy":
        choices = [(STRATEGY_LABELS.get(name, name), name) for name in STRATEGIES]
        return gr.Radio(choices=choices, value=value, label=f.label, info=f.help, visible=visible)
    if f.choices is not None:
        return gr.Radio(
            choices=list(f.choices), value=value, label=f.label, info=f.help, visible=visible
        )
    if f.kind is str:
        return gr.Textbox(
            value=value, label=f.label, info=f.help, scale=_WIDE.get(f.name), visible=visible
        )
    precision = 0 if f.kind is int else None
    return gr.Number(value=value, precision=precision, label=f.label, info=f.help, visible=visible)


@dataclass
class FormParts:
    """The form's components: the fields by setting name (in the order of
    NAMES), the folded Advanced section and its group notes."""

    fields: dict[str, Any]
    advanced: gr.Accordion


def build_up_front(
    settings: FormSettings, info: ModelInfo | None, sources: AllowedTaskSources
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The goal and the time budget, in one row of the current Blocks
    context; returns (components by name, every field's starting value)."""
    values = starting_values(settings, info, sources)
    built: dict[str, Any] = {}
    with gr.Row(elem_classes=[FORM_ROW]):
        for name in UP_FRONT:
            built[name] = _component(BY_NAME[name], values[name], sources, values)
    return built, values


def build_advanced(
    built: dict[str, Any], values: dict[str, Any], sources: AllowedTaskSources
) -> tuple[gr.Accordion, gr.Button]:
    """The folded Advanced section, one block per group of the table (each
    with a note on its words), only the fields that apply shown; adds its
    fields to `built`. Returns the section and its "Use example settings"."""
    with gr.Accordion("Advanced", open=False, elem_id="optimize-advanced") as advanced:
        with gr.Row():
            gr.Markdown(
                "Everything here has a default that suits a first run; only the fields that "
                "apply to the chosen goal, unit, objective and search are shown. The words: "
                f"`{glossary.DOC}`."
            )
            example = gr.Button("Use example settings", size="sm", scale=0, min_width=200)
        for group, title, rows in GROUP_ROWS:
            note = f" <small>{GROUP_NOTES[group]}</small>" if group in GROUP_NOTES else ""
            with gr.Column(visible=group_shown(group, values)) as column:
                gr.Markdown(f"**{title}**{note}")
                for row in rows:
                    with gr.Row(elem_classes=[FORM_ROW]):
                        for name in row:
                            built[name] = _component(BY_NAME[name], values[name], sources, values)
            built[_GROUP_KEY + group] = column
    return advanced, example


# Where build_advanced keeps a group's column among the built components.
_GROUP_KEY = "group:"


def group_shown(group: str, form: Mapping[str, Any]) -> bool:
    """Whether a group of the Advanced section shows: when any field of it does."""
    rows = next(rows for name, _title, rows in GROUP_ROWS if name == group)
    return any(shown(name, form) for row in rows for name in row)


def group_columns(built: Mapping[str, Any]) -> list[Any]:
    """The groups' columns, in GROUP_ROWS order (Visibility.__call__ fills them last)."""
    return [built[_GROUP_KEY + group] for group, _title, _rows in GROUP_ROWS]


def remember(settings: FormSettings, built: Mapping[str, Any]) -> None:
    for name, component in built.items():
        settings.remember(component, BY_NAME[name].saved_key)


class Visibility:
    """The change handler that shows the fields that apply and hides the
    others (`shown`), given the deciding fields' values (DECIDING order)."""

    outputs = tuple(name for name in NAMES if name not in UP_FRONT)

    def __call__(self, *deciding: Any) -> list[Any]:
        """Updates of the fields (`outputs` order), then of the groups' columns."""
        form = dict(zip(DECIDING, deciding, strict=True))
        fields = [gr.update(visible=shown(name, form)) for name in self.outputs]
        groups = [gr.update(visible=group_shown(g, form)) for g, _title, _rows in GROUP_ROWS]
        return fields + groups


def goal_update(folder: Any, goal: Any) -> Any:
    """The goal's choices for a newly chosen task folder, keeping the goal
    when it is still one of them (or typed in: a registered task's name)."""
    choices = goal_choices(folder if isinstance(folder, str) else None)
    values = [value for _label, value in choices]
    keep = goal if goal in values or (isinstance(goal, str) and not folder) else values[0]
    return gr.update(choices=choices, value=keep)
