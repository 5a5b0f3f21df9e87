"""The bad-input sweep over every field of the Optimize and Chat tabs
(the Steering tab's is tests/unit/test_bad_input.py): empty, whitespace, huge,
a 100,000-character text, non-finite, negative, reversed bounds,
unicode/RTL/emoji and path-like values. Each is refused with a clear message
before any model work starts (no job, the model lock free), and leaves the
active vectors and the chat as they were."""

from __future__ import annotations

import math

import pytest

from steering.models import LoadedModel
from steering.session import ModelSession
from tests.support.bad_input import HUGE, LONG, ODD, refused, unchanged
from tests.support.forms import UPDATE, form, steering_actions_with_example
from tests.support.models import clean_steerer, tiny_llama
from ui.chat_tab import ChatActions
from ui.optimize_form import NAMES


# One tiny model, session and example vector for the whole sweep, in place of
# the per-test ones of tests/conftest.py: every case checks by itself that it
# changed nothing (`unchanged`), so sharing them hides no leak, and it spares
# a model and a capture per case (about 0.1 s each, 40 s of the fast tier).
@pytest.fixture(scope="module")
def tiny(tokenizer):
    return LoadedModel(model=tiny_llama(tokenizer, 0), tokenizer=tokenizer, name="tiny-llama")


@pytest.fixture(scope="module")
def tiny_session(tiny):
    with clean_steerer(tiny):
        yield ModelSession(lambda: tiny)


@pytest.fixture(scope="module")
def steering_actions(tiny_session, tmp_path_factory):
    return steering_actions_with_example(tiny_session, tmp_path_factory.mktemp("sweep"))

COMMON = (None, "   ", math.nan, math.inf, -math.inf, HUGE, LONG, *ODD)
NUMBERS = (-1, 1.5, HUGE)

# What a field may legitimately be among the values above (so it is not a
# bad value for it): no task folder or held-out task means "registered
# tasks" and "none"; alphas may be negative or fractional; the highest layer
# is checked against the loaded model when the run starts (test_ui_optimize).
ALLOWED = {
    "task_folder": (None, "   "),
    "alpha_min": (-1, 1.5),
    "alpha_max": (-1, 1.5),
    "strength_min": (-1, 1.5),  # a strength may be negative (the other way) or fractional
    "strength_max": (-1, 1.5),
    "c1": (1.5,),
    "c2": (1.5,),
    "w": (1.5,),
    "layer_max": (HUGE,),
    "heldout_task": (None, "   "),
    "workers": (None,),
    "guard_task": (None, "   "),
    "kl_budget": (1.5, HUGE),  # a budget as large as one likes turns the guard off
    "budget": (1.5,),  # a minute and a half: a time budget
    "max_guard_drop": (1.5, HUGE),
}
# The form reads only the fields that apply (ui.optimize_form.applies), so each
# is swept where it does: the held-out limit with a held-out task; the bounds
# of the chosen unit; the KL budget and the guard task with the guarded
# objective (the sweep's form ranks by the target alone), the maximum guard
# drop with a guard task too.
GUARDED = {"objective": "guarded"}
WITH = {
    "heldout_limit": {"heldout_task": "sentiment_heldout"},
    "strength_min": {"unit": "strength"},
    "strength_max": {"unit": "strength"},
    "kl_budget": GUARDED,
    "guard_task": GUARDED,
    "max_guard_drop": {**GUARDED, "guard_task": "steer_health"},
}

CASES = [
    pytest.param(name, value, id=f"{name}={str(value)[:12]!r}")
    for name in NAMES
    for value in (*COMMON, *NUMBERS)
    if value not in ALLOWED.get(name, ())
]


def _refused_at_start(optimize_actions, tiny_session, **changes) -> str:
    before = tiny_session.current().steerer.vectors
    values = form(optimize_actions, **changes)
    first = next(optimize_actions.optimize(*values))
    status = first[-1]
    refused(status)
    assert all(part == UPDATE for part in first[:-1]), first  # nothing else changed
    assert optimize_actions.jobs.latest is None, "a run started"
    unchanged(tiny_session, before)
    return status


@pytest.mark.parametrize(("name", "value"), CASES)
def test_every_optimize_field_refuses_bad_values(optimize_actions, tiny_session, name, value):
    changes = {name: value, **WITH.get(name, {})}
    status = _refused_at_start(optimize_actions, tiny_session, **changes)
    assert len(status) < 600, status  # a 100,000-character value is not echoed back


@pytest.mark.parametrize(
    "changes",
    [{"layer_min": 3, "layer_max": 0}, {"alpha_min": 4.0, "alpha_max": -4.0}],
    ids=["layers", "alphas"],
)
def test_reversed_bounds_are_refused(optimize_actions, tiny_session, changes):
    status = _refused_at_start(optimize_actions, tiny_session, **changes)
    assert "range" in status


def test_no_vector_selected_is_refused(optimize_actions, tiny_session):
    refusal = _refused_at_start(optimize_actions, tiny_session, vectors=[])
    assert "Select at least one vector" in refusal


# -- Chat -----------------------------------------------------------------------

HISTORY = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]


@pytest.fixture
def chat(steering_actions):
    return ChatActions(steering_actions.session)


def _chat_refused(chat, tiny_session, message, tokens=8, temperature=0.0):
    before = tiny_session.current().steerer.vectors
    views = list(chat.send(message, list(HISTORY), [], False, tokens, temperature))
    status = views[-1][-1]
    assert status.startswith("⚠"), status
    assert "unexpected error" not in status, status
    states = views[-1][2:4]
    assert all(state == UPDATE for state in states), states  # history and log unchanged
    unchanged(tiny_session, before)
    return status


@pytest.mark.parametrize(
    "message", [None, "", "   \n\t", LONG], ids=["none", "empty", "space", "long"]
)
def test_bad_chat_messages_are_refused(chat, tiny_session, message):
    status = _chat_refused(chat, tiny_session, message)
    assert len(status) < 600, status


@pytest.mark.parametrize("tokens", [None, "", "   ", math.nan, math.inf, -1, 0, 1.5, HUGE, *ODD])
def test_bad_reply_lengths_are_refused(chat, tiny_session, tokens):
    _chat_refused(chat, tiny_session, "Hello there", tokens=tokens)


@pytest.mark.parametrize("temperature", [None, "", math.nan, math.inf, -math.inf, -1, HUGE, *ODD])
def test_bad_temperatures_are_refused(chat, tiny_session, temperature):
    _chat_refused(chat, tiny_session, "Hello there", temperature=temperature)


@pytest.mark.parametrize("message", [*ODD, "<img src=x onerror=alert(1)> [a](javascript:x)"])
def test_unicode_rtl_emoji_and_path_like_messages_are_plain_text(chat, tiny_session, message):
    views = list(chat.send(message, [], [], False, 4, 0.0))
    final = views[-1]
    assert final[-1].startswith("✓ Replied"), final[-1]
    assert final[2][0] == {"role": "user", "content": message}  # kept as typed, run as nothing
