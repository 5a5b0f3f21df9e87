"""Long work is the app's, not the page's: an optimization goes on
when the page that started it goes away; any page (reloaded, new, another
visitor's) attaches to it, sees it live, can cancel it and sees its result;
and while the model is busy every page shows the vectors the user made
active, not the trial settings the run is scoring."""

from __future__ import annotations

import threading

import pytest

from steering.capture import capture_vector
from tests.support.forms import form, views
from ui.jobs import BackgroundJob, JobRegistry
from ui.optimize_tab import OptimizeActions
from ui.steering_tab import SteeringActions


@pytest.fixture
def steering(tiny_session, tmp_path):
    actions = SteeringActions(tiny_session, tmp_path)
    *_, view = actions.add_vector("I love this, it is wonderful.", "I hate this.", 1, 2.0)
    assert view[2].startswith("✓ Added"), view[2]
    return actions


@pytest.fixture
def actions(tiny_session, steering, tmp_path):
    return OptimizeActions(tiny_session, tmp_path)


def test_a_run_outlives_its_page_and_a_reloaded_page_gets_its_result(actions, tiny_session):
    first = actions.optimize(*form(actions))
    assert next(first)[-1].startswith("Starting")
    first.close()  # the browser tab is closed or reloaded
    job = actions.jobs.latest
    assert job is not None
    reloaded = views(actions.attach())  # what the reloaded page's load event streams
    final = reloaded[-1]
    assert final[-1].startswith("✓ Done."), final[-1]
    assert final[5] is job.result and len(job.result.history) == 5
    assert "5 of 5 evaluations" in final[0]
    again = views(actions.attach())[-1]  # a page opened later: the same result, same file
    assert again[5] is job.result and again[6] == final[6]
    assert not tiny_session.lock.locked()


def test_any_page_can_cancel_the_running_job(actions, tiny_session):
    before = tiny_session.current().steerer.vectors
    assert actions.cancel() == "Nothing to cancel: no job is running."
    first = actions.optimize(*form(actions, particles=2, iterations=6))
    next(first)
    first.close()
    other_page = actions.attach()
    shown = []
    for view in other_page:
        shown.append(view)
        if "2 of 16 evaluations" in view[0]:
            assert actions.cancel().startswith("✕ Cancelling")
    assert "cancelled" in shown[-1][0]
    assert shown[-1][5].cancelled
    assert tiny_session.current().steerer.vectors == before
    assert actions.jobs.running is None


def test_a_page_with_no_job_shows_the_idle_view(actions):
    (view,) = views(actions.attach())
    assert "Not started" in view[0] and view[-1] == ""


def test_a_page_reloaded_after_another_job_still_gets_the_runs_result(actions, tiny_session):
    """Apply best is a job of its own: a page reloaded after it still shows
    the optimization's verdict and result, not an empty tab."""
    final = views(actions.optimize(*form(actions)))[-1]
    result = final[5]
    other = BackgroundJob(tiny_session.lock, lambda emit, cancel: "applied", kind="apply")
    assert actions.jobs.start(other)
    list(other.follow())
    assert actions.jobs.latest is other and actions.jobs.latest_of("optimize") is not other
    reloaded = views(actions.attach())[-1]
    assert reloaded[5] is result and reloaded[-1].startswith("✓ Done."), reloaded[-1]
    from ui.optimize_tab import VIEW

    plot = reloaded[VIEW.index("front_plot")]  # shown only when there is a front to draw
    assert plot["visible"] is (plot["value"] is not None)


def test_the_registry_runs_one_job_at_a_time():
    lock = threading.Lock()
    gate = threading.Event()
    registry = JobRegistry()
    first = BackgroundJob(lock, lambda emit, cancel: (emit(1), gate.wait(), "one")[-1])
    second = BackgroundJob(lock, lambda emit, cancel: "two")
    assert registry.start(first)
    assert not registry.start(second) and registry.running is first
    gate.set()
    assert list(first.follow()) == [("item", 1)] and first.result == "one"
    assert registry.running is None
    assert registry.start(second)
    assert list(second.follow()) == [] and second.result == "two"


def test_a_job_error_reaches_every_follower():
    def work(emit, cancel):
        emit("x")
        raise RuntimeError("boom")

    job = BackgroundJob(threading.Lock(), work)
    job.start()
    for _ in range(2):
        follower = job.follow()
        assert next(follower) == ("item", "x")
        with pytest.raises(RuntimeError, match="boom"):
            next(follower)


def test_a_busy_model_still_shows_the_users_vectors(steering, tiny_session):
    """An optimization holds the lock and scores a trial setting; a page that
    loads meanwhile must show the user's vector, not the trial or nothing."""
    steerer = tiny_session.current().steerer
    (mine,) = steerer.vectors
    trial = capture_vector(steerer, ["a trial concept"], 2, 3.0)
    inside, leave = threading.Event(), threading.Event()

    def busy():
        with tiny_session.lock, steerer.applied([trial]):
            inside.set()
            leave.wait()

    thread = threading.Thread(target=busy)
    thread.start()
    try:
        inside.wait()
        assert steerer.vectors == (trial,)  # the trial is what the model runs now
        line, _layer, table, choices = steering.refresh()
        assert "tiny-llama" in line
        assert [row[0] for row in table] == [1] and table[0][4].startswith("I love this")
        assert [value for _label, value in choices["choices"]] == [mine.id]
        assert OptimizeActions(tiny_session).vector_choices(None)["value"] == [mine.id]
    finally:
        leave.set()
        thread.join()
    assert steerer.vectors == (mine,) and steerer.user_vectors == (mine,)
