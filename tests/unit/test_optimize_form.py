"""The Optimize tab's one obvious path: a few choices up front, the rest folded
under Advanced, and only the fields that apply shown (and sent to the run)."""

from __future__ import annotations

from typing import Any

import pytest

from optimize.config.table import BY_NAME
from ui.app import build_app
from ui.optimize_form import (
    CONCEPT,
    CONCEPT_LABEL,
    DECIDING,
    GROUP_ROWS,
    NAMES,
    TASKS_DIR,
    UP_FRONT,
    Visibility,
    applies,
    goal_choices,
    parse_request,
    shown,
)

INPUTS = {"checkboxgroup", "dropdown", "number", "textbox", "radio", "checkbox", "slider",
          "button", "file"}


def _values(**changes: Any) -> list[Any]:
    values = {name: BY_NAME[name].form_start for name in NAMES}
    values.update(task="steer_sentiment", task_folder=str(TASKS_DIR), layer_min=0, layer_max=3,
                  heldout_task="", guard_task="", heldout_limit=None)
    values.update(changes)
    return [values[name] for name in NAMES]


def _tab(layout: dict[str, Any], components: dict[int, dict[str, Any]], label: str) -> Any:
    """The layout node of the tab labelled `label`."""
    for child in layout.get("children", []):
        props = components.get(child["id"], {}).get("props", {})
        if components.get(child["id"], {}).get("type") == "tabitem" and props.get("label") == label:
            return child
        found = _tab(child, components, label)
        if found is not None:
            return found
    return None


def _shown_inputs(node: dict[str, Any], components: dict[int, dict[str, Any]]) -> list[str]:
    """The inputs and buttons a person sees under `node` before opening
    anything: visible, not inside a folded accordion."""
    found = []
    for child in node.get("children", []):
        component = components.get(child["id"], {})
        props = component.get("props", {})
        if props.get("visible") is False:
            continue
        if component.get("type") == "accordion" and not props.get("open", True):
            continue
        if component.get("type") in INPUTS:
            found.append(str(props.get("label") or props.get("value")))
        found += _shown_inputs(child, components)
    return found


def test_the_optimize_tab_shows_at_most_six_inputs_before_advanced_is_opened(
    tiny_session, tmp_path
):
    app = build_app(tiny_session, tmp_path)
    components = {c["id"]: c for c in app.config["components"]}
    tab = _tab(app.config["layout"], components, "Optimize")
    shown_inputs = _shown_inputs(tab, components)
    # the vectors, what "better" means, the time budget, Optimize, Cancel
    assert shown_inputs == [
        "What to steer", "What “better” means", "Time budget (minutes)", "Optimize vectors",
        "Cancel",
    ], shown_inputs
    assert len(shown_inputs) <= 6
    # every other setting is in the folded Advanced section
    labels = {components[c["id"]]["props"].get("label") for c in app.config["components"]
              if c["id"] in components}
    for name in NAMES:
        assert BY_NAME[name].label in labels or name in UP_FRONT, name


def test_the_advanced_groups_are_the_tables_groups_and_lay_out_every_field():
    laid_out = [name for _group, _title, rows in GROUP_ROWS for row in rows for name in row]
    assert sorted(laid_out + list(UP_FRONT)) == sorted(NAMES)
    for group, _title, rows in GROUP_ROWS:
        for row in rows:
            for name in row:
                assert BY_NAME[name].group == group, name


@pytest.mark.parametrize(
    ("form", "hidden", "visible"),
    [
        ({"unit": "strength"}, {"alpha_min", "alpha_max"}, {"strength_min", "strength_max"}),
        ({"unit": "alpha"}, {"strength_min", "strength_max"}, {"alpha_min", "alpha_max"}),
        ({"strategy": "tpe"}, {"c1", "c2", "w"}, {"particles", "seed"}),
        ({"budget": 5}, {"iterations"}, {"particles"}),
        ({"budget": 0}, set(), {"iterations"}),
        ({"heldout_task": ""}, {"heldout_limit"}, {"holdout_fraction"}),
        ({"heldout_task": "sentiment_heldout"}, {"holdout_fraction"}, {"heldout_limit"}),
        ({"objective": "target"}, {"kl_budget", "guard_task", "max_guard_drop"}, {"finalists"}),
        ({"objective": "guarded", "guard_task": ""}, {"max_guard_drop"}, {"kl_budget"}),
        ({"objective": "guarded", "guard_task": "g"}, set(), {"max_guard_drop", "guard_task"}),
        (
            {"task": CONCEPT},
            {"metric", "limit", "heldout_task", "confirm_fraction", "finalists", "significance",
             "objective", "guard_task", "max_guard_drop", "workers"},
            {"task_folder", "holdout_fraction", "kl_budget", "batch_size", "layer_min"},
        ),
    ],
)
def test_only_the_fields_that_apply_are_shown(form, hidden, visible):
    for name in hidden:
        assert not shown(name, form), name
    for name in visible:
        assert shown(name, form), name
    # the change handler says the same, for every field and group
    updates = Visibility()(*(form.get(name) for name in DECIDING))
    fields = dict(zip(Visibility.outputs, updates, strict=False))
    for name in hidden - set(UP_FRONT):
        assert fields[name]["visible"] is False, name
    for name in visible - set(UP_FRONT):
        assert fields[name]["visible"] is True, name


def test_a_group_with_no_field_that_applies_is_hidden():
    updates = Visibility()(*({"task": CONCEPT}.get(name) for name in DECIDING))
    names = [g for g, _t, _r in GROUP_ROWS]
    groups = dict(zip(names, updates[len(Visibility.outputs) :], strict=True))
    assert groups["workers"]["visible"] is False  # Ray workers: task runs only
    assert groups["search space"]["visible"] is True


def test_a_field_that_does_not_apply_never_changes_the_run():
    """What the form hides it does not send: nonsense in a hidden field is not
    read (the other unit's bounds, the swarm's coefficients of another
    strategy, the iterations a time budget plans)."""
    hidden_nonsense = {"alpha_min": "nonsense", "c1": -5, "iterations": None}
    settings = parse_request(
        ["a"], *_values(unit="strength", strategy="tpe", budget=2.0, **hidden_nonsense)
    ).settings
    assert settings.strategy == "tpe" and settings["budget"] == 2.0
    assert "alpha_min" not in settings.given and "c1" not in settings.given
    assert all(applies(n, {"unit": "strength"}) for n in ("strength_min", "strength_max"))


def test_the_goal_offers_the_folders_tasks_and_concept_strength():
    choices = goal_choices(str(TASKS_DIR))
    values = [value for _label, value in choices]
    assert {"steer_sentiment", "sentiment_search", "steer_health"} <= set(values)
    assert choices[-1] == (CONCEPT_LABEL, CONCEPT)
    assert goal_choices(None) == [(CONCEPT_LABEL, CONCEPT)]  # registered tasks are typed
    concept = parse_request(["a"], *_values(task=CONCEPT)).settings
    assert concept.objective == "concept" and not concept.scores_task
