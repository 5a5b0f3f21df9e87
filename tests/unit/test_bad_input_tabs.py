"""The bad-input sweep over the fields the other sweeps leave out: the
Steering tab's contrast, unit, remove, save, export and load fields and its
"From a task" panel, the Explore tab and the Saved tab (the concept, layer and alpha
are in tests/unit/test_bad_input.py, Optimize and Chat in
tests/unit/test_bad_input_forms.py); and a 5,000-line capture, refused at the
2,000-prompt cap with memory flat. Each value gets a clear message (no
"unexpected error", a pasted page not echoed back whole) and leaves the
active vectors as they were. All on the tiny Llama, handlers only."""

from __future__ import annotations

import math
import resource

import pytest

from optimize.scoring.task_sources import SHIPPED_TASKS, AllowedTaskSources
from steering.explore_map import cell_key
from steering.limits import MAX_PROMPTS_PER_CAPTURE
from steering.persist import DataFolder
from steering.session import ModelSession
from tests.support.bad_input import GOOD, HUGE, LONG, ODD, unchanged
from tests.support.models import clean_steerer
from ui.explore_tab import ExploreActions
from ui.gguf_panel import GgufActions
from ui.saved_tab import SavedActions
from ui.steering_tab import SteeringActions
from ui.task_vector_panel import TaskVectorActions

# A text box gives a string or None; a number box a float or None. Each
# field is swept with what its component can deliver (every value a page or
# the API can send to that field).
TEXTS = (None, "", "   ", LONG, *ODD, "<img src=x>", "nan", "inf", "-inf", "-1", "1.5", str(HUGE))
NUMBER_VALUES = (None, math.nan, math.inf, -math.inf, HUGE, -1, 1.5, 0)
FIVE_THOUSAND = "\n".join(f"I am happy, line {i}." for i in range(5000))


def refused_briefly(status: str) -> None:
    """Refused, with a message a person can read (not a 100,000-character echo)."""
    assert status.startswith("⚠"), status[:300]  # a failure shows the value in the message
    assert "unexpected error" not in status, status[:300]
    assert len(status) < 600, status[:300]


@pytest.fixture
def steering(tiny_session, tmp_path):
    actions = SteeringActions(tiny_session, tmp_path / "saves")
    *_, (_rows, _c, status) = actions.add_vector(GOOD, "I hate this.", 1, 2.0)
    assert status.startswith("✓ Added"), status
    return actions


def _last(iterator):
    items = list(iterator)
    assert items
    return items[-1]


# -- Steering tab -----------------------------------------------------------------


def test_bad_contrast_units_removals_and_files_are_refused(steering, tiny_session):
    before = tiny_session.current().steerer.vectors
    for contrast in (LONG, FIVE_THOUSAND):
        refused_briefly(_last(steering.add_vector(GOOD, contrast, 1, 1.0))[2])
    for unit in (*TEXTS[1:], "volts"):  # None: the default unit
        refused_briefly(_last(steering.add_vector(GOOD, "", 1, 1.0, unit))[2])
    for vector_id in (*TEXTS, "no-such-id"):
        refused_briefly(_last(steering.remove_vector(vector_id))[2])
    for file in (*TEXTS, "/", "/no/such/file.safetensors"):
        refused_briefly(_last(steering.load_vectors(file))[2])
    unchanged(tiny_session, before)


def test_bad_save_names_are_refused_or_kept_in_the_save_folder(steering, tiny_session):
    """A name is reduced to a plain file name in the app's save folder: a path
    cannot write elsewhere; a name with nothing plain left, or too long for
    the filesystem, is refused."""
    before = tiny_session.current().steerer.vectors
    folder = str(steering.save_dir) + "/"
    for name in (*TEXTS, "///", ".."):
        saved, status = _last(steering.save_vectors(name))
        if status.startswith("✓"):
            path = saved["value"]
            assert path.startswith(folder) and "/" not in path[len(folder):], (name, path)
            assert len(status) < 600, status[:300]
        else:
            refused_briefly(status)
    assert "at most 120 characters" in _last(steering.save_vectors(LONG))[1]
    export = GgufActions(tiny_session, steering.save_dir)  # "Export for llama.cpp": the same rule
    for name in (*TEXTS, "///", ".."):
        saved, _flags, status = _last(export.export(name))
        if status.startswith("✓"):
            assert saved["value"].startswith(folder) and "/" not in saved["value"][len(folder):]
        else:
            refused_briefly(status)
    unchanged(tiny_session, before)


def test_a_5000_line_capture_is_refused_at_the_cap_and_memory_stays_flat(steering, tiny_session):
    """5,000 concept (or contrast) lines: refused naming the 2,000 cap before
    the model runs; ten such refusals leave peak memory flat."""
    before = tiny_session.current().steerer.vectors
    rss = []
    for attempt in range(10):
        concept, contrast = (FIVE_THOUSAND, "") if attempt % 2 == 0 else (GOOD, FIVE_THOUSAND)
        status = _last(steering.add_vector(concept, contrast, 1, 1.0))[2]
        refused_briefly(status)
        assert f"at most {MAX_PROMPTS_PER_CAPTURE:,}" in status and "5,000" in status, status
        rss.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    unchanged(tiny_session, before)
    assert rss[-1] - rss[0] < 50 * 1024, rss  # KiB


# -- "From a task" ----------------------------------------------------------------

TASK_ARGS = {"folder": str(SHIPPED_TASKS), "task": "steer_sentiment", "docs": 4, "layer": 2,
             "coefficient": 0.25, "unit": "strength"}
TASK_TEXT = ("folder", "task", "unit")
TASK_ALLOWED = {
    "folder": (None, "", "   "),
    "layer": (0,),
    "coefficient": (-1, 1.5, 0),
    "unit": (None,),
}
TASK_CASES = [
    (name, value)
    for name in TASK_ARGS
    for value in (TEXTS if name in TASK_TEXT else NUMBER_VALUES)
    if value not in TASK_ALLOWED.get(name, ())
]


def test_every_task_vector_field_refuses_bad_values(tiny_session):
    panel = TaskVectorActions(tiny_session, AllowedTaskSources.default())
    before = tiny_session.current().steerer.vectors
    for name, value in TASK_CASES:
        refused_briefly(_last(panel.add_from_task(**{**TASK_ARGS, name: value}))[2])
    unchanged(tiny_session, before)


# -- Explore tab ------------------------------------------------------------------


@pytest.fixture
def explore(steering, tiny_session):
    vector = tiny_session.current().steerer.vectors[0]
    return ExploreActions(tiny_session), vector.id


MAP_ARGS = {"layers": "1, 2", "strengths": "0.5", "neutral": 2}
# blank: the defaults; any finite strength is a choice (negative: the other way)
MAP_ALLOWED = {"layers": (None, "", "   "), "strengths": (None, "", "   ", "-1", "1.5", str(HUGE))}
MAP_CASES = [
    (name, value)
    for name in MAP_ARGS
    for value in (NUMBER_VALUES if name == "neutral" else (*TEXTS, "1, nan"))
    if value not in MAP_ALLOWED.get(name, ())
]


def test_every_map_field_and_a_bad_vector_choice_are_refused(explore, tiny_session):
    actions, vector_id = explore
    before = tiny_session.current().steerer.vectors
    for name, value in MAP_CASES:
        args = {**MAP_ARGS, name: value}
        view = actions.map(vector_id, args["layers"], args["strengths"], args["neutral"])
        refused_briefly(_last(view)[-1])
    for bad in (*TEXTS, "no-such-id"):
        for view in (
            actions.scan(bad, None),
            actions.inspect(bad),
            actions.map(bad, "1", "0.5", 2),
        ):
            refused_briefly(_last(view)[-1])
    unchanged(tiny_session, before)


def test_explore_refuses_bad_cells_prompts_reply_lengths_and_measures(explore, tiny_session):
    actions, vector_id = explore
    state = _last(actions.map(vector_id, "1", "0.5", 2))[2]
    key = cell_key(state.cells[0])
    before = tiny_session.current().steerer.vectors
    for bad in (*TEXTS, "9:7"):
        refused_briefly(_last(actions.apply(vector_id, bad, state))[-1])
        refused_briefly(_last(actions.compare(vector_id, [bad], "Hello", 4, state))[-1])
    refused_briefly(_last(actions.compare(vector_id, [], "Hello", 4, state))[-1])
    for measure in ("volts", LONG, *ODD):
        refused_briefly(_last(actions.scan(vector_id, measure))[-1])
    for prompt in (None, "", "   ", LONG):
        refused_briefly(_last(actions.compare(vector_id, [key], prompt, 4, state))[-1])
    for tokens in NUMBER_VALUES:
        refused_briefly(_last(actions.compare(vector_id, [key], "Hello", tokens, state))[-1])
    unchanged(tiny_session, before)


# -- Saved tab --------------------------------------------------------------------


def test_bad_saved_choices_are_refused(tiny, tmp_path):

    with clean_steerer(tiny):
        session = ModelSession(lambda: tiny, data=DataFolder(tmp_path))
        list(SteeringActions(session, tmp_path / "saves").add_vector(GOOD, "", 1, 1.0))
        before = session.current().steerer.vectors
        for choice in (*TEXTS, "vectors/", "vectors/../../etc/passwd", "results/nothing.json",
                       "bogus/x", "vectors/" + LONG):
            refused_briefly(_last(SavedActions(session).open(choice))[2])
        unchanged(session, before)
