"""The Optimize tab and interrupted runs: a run keeps its journal in
the results folder, a cancelled (or crashed) run is offered for resuming,
and resuming finishes it with the history of an uninterrupted run, scoring
only what was left; Ray workers are refused for a model handed over in
memory, and the form passes the number of workers."""

from __future__ import annotations

import re

import pytest

from steering.errors import InvalidInputError
from tests.support.forms import form, views
from ui.optimize_resume import latest_interrupted, workers_for
from ui.optimize_tab import OptimizeActions, parse_request


def _history(result):
    return [(e.iteration, e.particle, e.setting, dict(e.metrics), e.cached) for e in result.history]


def test_a_cancelled_run_is_offered_and_resumes_to_the_uninterrupted_history(
    optimize_actions, tiny_session, tmp_path
):
    assert optimize_actions.resume_offer()[0] == ""
    whole = views(
        optimize_actions.optimize(*form(optimize_actions, particles=2, iterations=3))
    )[-1][5]
    # the journal is gone
    assert not whole.cancelled and latest_interrupted(optimize_actions.save_dir) is None
    shown = []
    for view in optimize_actions.optimize(*form(optimize_actions, particles=2, iterations=3)):
        shown.append(view)
        done = re.search(r"(\d+) of \d+ evaluations", str(view[0]))
        if done and int(done.group(1)) >= 2:
            optimize_actions.cancel()
    assert shown[-1][5].cancelled
    path, kept = latest_interrupted(optimize_actions.save_dir)
    text, button = optimize_actions.resume_offer()
    assert "interrupted run" in text and f"{len(kept.search)} settings of at most 6 scored" in text
    assert button["visible"] is True and 1 <= len(kept.search) < 6
    # as after a restart of the app
    again = OptimizeActions(tiny_session, optimize_actions.save_dir)
    final = views(again.resume())[-1]
    resumed = final[5]
    assert not resumed.cancelled and _history(resumed) == _history(whole)
    assert not path.exists() and again.resume_offer()[0] == ""
    assert "There is no interrupted run" in views(again.resume())[-1][-1]


def test_ray_workers_need_a_model_loaded_from_files(optimize_actions, tiny_session):
    request = parse_request(*form(optimize_actions, workers=2))
    assert request.settings.workers == 2
    current = tiny_session.current()
    assert current.loaded.origin is None  # the tiny model was handed over in memory
    with pytest.raises(InvalidInputError, match="handed over in memory"):
        workers_for(current, request.settings, (0,))
    assert workers_for(current, parse_request(*form(optimize_actions)).settings, (0,)) is None
    with pytest.raises(InvalidInputError, match="Ray workers"):
        parse_request(*form(optimize_actions, workers=-1))


def test_resume_checks_what_the_journal_says_as_if_it_were_typed(optimize_actions, tmp_path):
    """A journal is data anyone who can write the results folder could have
    made: the run it describes is rebuilt through the same checks as the
    form's, so a task folder the operator did not allow (its Python would be
    imported by lm-eval) and values beyond today's limits are refused, and
    nothing runs."""
    from optimize.run.journal import Journal
    from optimize.scoring.task_sources import TaskSourceError

    evil = tmp_path / "evil_tasks"
    evil.mkdir()
    (evil / "utils.py").write_text("raise SystemExit('imported')\n")
    vector = optimize_actions.vector_choices(None)["value"][0]
    folder = optimize_actions.save_dir
    folder.mkdir(parents=True, exist_ok=True)
    cases = [
        ({"task": "evil", "task_folder": str(evil)}, "is not one the operator allowed"),
        ({"task": "steer_sentiment", "particles": 10**6}, "at most 1,000"),
    ]
    for number, (settings, needle) in enumerate(cases):
        path = folder / f"optimization-{number}.journal.jsonl"
        identity = {"vectors": [{"id": vector}], "settings": settings, "model": {"name": "x"}}
        Journal.start(path, identity).close()
        status = views(optimize_actions.resume())[-1][-1]
        assert status.startswith("⚠ Could not resume the run") and needle in status, status
        assert optimize_actions.jobs.latest is None  # nothing started
        path.unlink()
    from optimize.run.journal import read_journal
    from ui.optimize_resume import request_from

    Journal.start(folder / "again.journal.jsonl", {"settings": cases[0][0], "vectors": []}).close()
    journal = read_journal(folder / "again.journal.jsonl")
    with pytest.raises(TaskSourceError):
        request_from(journal, optimize_actions.sources)
