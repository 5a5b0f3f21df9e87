"""The Optimize tab and interrupted runs (issue 14): a run keeps its journal in
the results folder, a cancelled (or crashed) run is offered for resuming,
and resuming finishes it with the history of an uninterrupted run, scoring
only what was left; Ray workers are refused for a model handed over in
memory, and the form passes the number of workers."""

from __future__ import annotations

import re

import pytest

from optimize.run.journal import read_journal
from steering.errors import InvalidInputError
from ui.optimize_resume import latest_interrupted, workers_for
from ui.optimize_tab import OptimizeActions, parse_request
from tests.integration.test_ui_optimize import actions, form, session, steering, views  # noqa: F401 (fixtures)


def _history(result):
    return [(e.iteration, e.particle, e.setting, dict(e.metrics), e.cached) for e in result.history]


def test_a_cancelled_run_is_offered_and_resumes_to_the_uninterrupted_history(actions, session, tmp_path):  # noqa: F811
    assert actions.resume_offer()[0] == ""
    whole = views(actions.optimize(*form(actions, particles=2, iterations=3)))[-1][5]
    assert not whole.cancelled and latest_interrupted(actions.save_dir) is None  # journal gone
    shown = []
    for view in actions.optimize(*form(actions, particles=2, iterations=3)):
        shown.append(view)
        done = re.search(r"(\d+) of 7 evaluations", str(view[0]))
        if done and int(done.group(1)) >= 2:
            actions.cancel()
    assert shown[-1][5].cancelled
    path, kept = latest_interrupted(actions.save_dir)
    text, button = actions.resume_offer()
    assert "interrupted run" in text and f"{len(kept.search)} settings of at most 6 scored" in text
    assert button["visible"] is True and 1 <= len(kept.search) < 6
    again = OptimizeActions(session, actions.save_dir)  # as after a restart of the app
    final = views(again.resume())[-1]
    resumed = final[5]
    assert not resumed.cancelled and _history(resumed) == _history(whole)
    assert not path.exists() and again.resume_offer()[0] == ""
    assert "There is no interrupted run" in views(again.resume())[-1][-1]


def test_ray_workers_need_a_model_loaded_from_files(actions, session):  # noqa: F811
    request = parse_request(*form(actions), 2)  # the form's last field: Ray workers
    assert request.workers == 2
    current = session.current()
    assert current.loaded.origin is None  # the tiny model was handed over in memory
    with pytest.raises(InvalidInputError, match="handed over in memory"):
        workers_for(current, request, (0,))
    assert workers_for(current, parse_request(*form(actions)), (0,)) is None
    with pytest.raises(InvalidInputError, match="Ray workers"):
        parse_request(*form(actions), -1)
