"""The Optimize tab's form as the tests fill it, and what its handlers answer."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ui.optimize_tab import TASKS_DIR, OptimizeActions

UPDATE = {"__type__": "update"}  # gr.update() with no change, as a handler returns it


def last(gen: Iterable[Any]) -> Any:
    """The last value a handler yielded."""
    values = list(gen)
    assert values, "the handler yielded nothing"
    return values[-1]


def steering_actions_with_example(session: Any, folder: Any) -> Any:
    """The Steering tab's handlers on `session` (saving under `folder`), with
    one joy-minus-grief vector added at layer 1, alpha 2."""
    from ui.steering_tab import SteeringActions

    actions = SteeringActions(session, folder)
    status = last(
        actions.add_vector("I love this, it is wonderful.", "I hate this, it is awful.", 1, 2.0)
    )[2]
    assert status.startswith("✓ Added"), status
    return actions


def views(gen: Iterable[Any]) -> list[Any]:
    """Every view the optimize handler yields; each must fill every output of
    the view (ui.optimize_tab.VIEW)."""
    from ui.optimize_tab import VIEW

    values = list(gen)
    assert values and all(len(v) == len(VIEW) for v in values), [len(v) for v in values]
    return values


def form(actions: OptimizeActions, **changes: Any) -> list[Any]:
    """The tab's inputs, in order (the vector selection, then the form's
    fields in the order of NAMES), with small settings."""
    values = {"vectors": actions.vector_choices(None)["value"], **changes}
    return [values["vectors"], *form_fields(**changes)]


def form_fields(**changes: Any) -> list[Any]:
    """The form's fields in the order of NAMES, with small settings (no
    vector selection: for a client of the served app)."""
    from ui.optimize_form import NAMES

    values = {
        "task": "steer_sentiment",
        "task_folder": str(TASKS_DIR),
        "metric": "acc",
        "limit": 4,
        "batch_size": 4,
        "particles": 2,
        "iterations": 2,
        "budget": 0,
        "layer_min": 0,
        "layer_max": 3,
        "unit": "alpha",
        "strength_min": -0.4,
        "strength_max": 0.4,
        "alpha_min": -4.0,
        "alpha_max": 4.0,
        "c1": 0.5,
        "c2": 0.3,
        "w": 0.9,
        "velocity_limit": 0.25,
        "seed": 0,
        "heldout_task": "",
        "heldout_limit": 100,
        # no held-out share and the target alone (tests of the defaults pass
        # their own); the finalists confirmed on the documents not searched
        "holdout_fraction": 0.0,
        "confirm_fraction": 0.5,
        "finalists": 2,
        "significance": 0.05,
        "strategy": "pso",
        "objective": "target",
        "kl_budget": 0.5,
        "guard_task": "",
        "max_guard_drop": 5.0,
        "workers": 0,
    }
    values.update(changes)
    return [values[name] for name in NAMES]


def named(view: Any) -> dict[str, Any]:
    """An optimize view by output name (ui.optimize_tab.VIEW)."""
    from ui.optimize_tab import VIEW

    assert len(view) == len(VIEW), len(view)
    return dict(zip(VIEW, view, strict=True))
