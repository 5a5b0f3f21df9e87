"""The Steering tab's "From a task" panel and strength input (the action
classes, on the tiny model and the shipped tasks; no browser)."""

from __future__ import annotations

import pytest

from optimize.scoring.task_sources import SHIPPED_TASKS, AllowedTaskSources
from ui.steering_tab import SteeringActions
from ui.task_vector_panel import TaskVectorActions

JOY = "I am so happy today!\nWhat a wonderful surprise."
GRIEF = "I am so sad today.\nWhat a terrible loss."


def last(gen):
    values = list(gen)
    assert values
    return values[-1]


@pytest.fixture
def panel(tiny_session):
    return TaskVectorActions(tiny_session, AllowedTaskSources.default())


def test_a_task_vector_is_added_at_the_strength_asked(panel, tiny_session):
    table, choices, status = last(
        panel.add_from_task(str(SHIPPED_TASKS), "steer_sentiment", 4, 2, 0.25, "strength")
    )
    assert status.startswith("✓ Added vector #1 from task steer_sentiment"), status
    assert "strength 0.25" in status and "left out of every score" in status
    (vector,) = tiny_session.current().steerer.vectors
    assert vector.method == "task_pairs" and vector.layer == 2
    assert vector.strength == pytest.approx(0.25)
    assert table[0][1:4] == [2, round(vector.alpha, 4), 0.25]  # alpha and strength side by side
    assert len(choices["choices"]) == 1


def test_a_task_vector_with_a_raw_alpha(panel, tiny_session):
    *_, status = last(panel.add_from_task(str(SHIPPED_TASKS), "steer_health", 3, 1, 2.0, "alpha"))
    assert status.startswith("✓ Added"), status
    (vector,) = tiny_session.current().steerer.vectors
    assert vector.alpha == 2.0 and f"(strength {vector.strength:.3g})" in status


@pytest.mark.parametrize(
    "args, message",
    [
        (("/", "steer_sentiment", 4, 2, 0.25, "strength"), "not allowed"),
        ((str(SHIPPED_TASKS), "", 4, 2, 0.25, "strength"), "Enter the name"),
        ((str(SHIPPED_TASKS), "no_such_task", 4, 2, 0.25, "strength"), "no_such_task"),
        ((str(SHIPPED_TASKS), "steer_sentiment", 0, 2, 0.25, "strength"), "documents"),
        ((str(SHIPPED_TASKS), "steer_sentiment", 4, 9, 0.25, "strength"), "out of range"),
        ((str(SHIPPED_TASKS), "steer_sentiment", 4, 2, float("nan"), "strength"), "Strength"),
        ((str(SHIPPED_TASKS), "steer_sentiment", 4, 2, 1e9, "alpha"), "Alpha"),
        ((str(SHIPPED_TASKS), "steer_sentiment", 4, 2, 1.0, "volts"), "unit"),
    ],
)
def test_bad_task_vector_input_adds_nothing(panel, tiny_session, args, message):
    *_, status = last(panel.add_from_task(*args))
    assert status.startswith("⚠") and message in status, status
    assert tiny_session.current().steerer.vectors == ()


def test_the_prompt_form_accepts_a_strength(tiny_session, tmp_path):
    actions = SteeringActions(tiny_session, tmp_path)
    table, _choices, status = last(actions.add_vector(JOY, GRIEF, 2, 0.5, "strength"))
    (vector,) = tiny_session.current().steerer.vectors
    assert vector.strength == pytest.approx(0.5) and "(strength 0.5)" in status
    assert table[0][3] == 0.5
    *_, status = last(actions.add_vector(JOY, GRIEF, 2, 1e6, "strength"))
    assert status.startswith("⚠") and len(tiny_session.current().steerer.vectors) == 1
