"""Every job that holds the model is a job of the app, on the tiny Llama: one
at a time, estimated before it starts (a long one waits for **Go on**, which
no second click of the starting button gives; above the operator's limit it
is refused), with progress, a Cancel from any page that stops it within a
batch, its own cancel event, and followed again by a page that loads while
it runs. The model is made slow where a test needs a job caught mid-way: a
pre-hook on a decoder layer that blocks until the test lets it go (no
timing assertions)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from steering import capture_vector
from ui.explore_tab import ExploreActions, MapState
from ui.jobs import JobLimits, JobRegistry
from ui.steering_tab import SteeringActions

JOY = "I love this, it is wonderful.\nWhat a happy bright day."
GRIEF = "I hate this, it is awful.\nWhat a sad grey day."
MANY = "\n".join(f"Sentence number {i} says something plain about the weather." for i in range(200))


class Gate:
    """Blocks a decoder layer's forward once `armed` (or from its `after`-th
    call on), until `release()`: a model slow exactly where a test needs it."""

    def __init__(self, after: int | None = None) -> None:
        self.after = after
        self.calls = 0
        self.armed = threading.Event()
        self.blocked = threading.Event()
        self.released = threading.Event()

    def __call__(self, module: Any, args: Any) -> None:
        self.calls += 1
        if self.after is not None and self.calls >= self.after:
            self.armed.set()
        if self.armed.is_set() and not self.released.is_set():
            self.blocked.set()
            assert self.released.wait(60), "the test never released the model"

    def release(self) -> None:
        self.released.set()


@contextmanager
def slow_layer(steerer: Any, layer: int, gate: Gate) -> Iterator[Gate]:
    handle = steerer.layers[layer].register_forward_pre_hook(gate)
    try:
        yield gate
    finally:
        gate.release()
        handle.remove()


class Page:
    """A handler's generator consumed in a thread, as a browser page would:
    every view it yields is kept."""

    def __init__(self, gen: Iterator[Any]) -> None:
        self.views: list[Any] = []
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(gen,), daemon=True)
        self._thread.start()

    def _run(self, gen: Iterator[Any]) -> None:
        try:
            for view in gen:
                self.views.append(view)
        except BaseException as exc:  # noqa: BLE001 - re-raised by done()
            self.error = exc

    def done(self) -> list[Any]:
        self._thread.join(120)
        assert not self._thread.is_alive(), "the page never finished"
        if self.error is not None:
            raise self.error
        return self.views


@pytest.fixture
def app(tiny_session, tmp_path):
    """The Steering and Explore handlers of one app (one job registry), with one vector."""
    jobs = JobRegistry()
    steering = SteeringActions(tiny_session, tmp_path, jobs)
    *_, view = steering.add_vector(JOY, GRIEF, 1, 2.0)
    assert view[2].startswith("✓ Added vector #1"), view[2]
    return steering, ExploreActions(tiny_session, jobs), jobs, tiny_session


def test_a_capture_is_cancelled_from_another_page_within_a_batch(app):
    steering, _explore, jobs, session = app
    steerer = session.current().steerer
    (mine,) = steerer.vectors
    with slow_layer(steerer, 2, Gate(after=2)) as gate:  # the capture's second batch waits
        first_page = Page(steering.add_vector(MANY, "", 1, 1.0))
        assert gate.blocked.wait(60)
        # a page that loads now: the user's vector, and a word that the model is busy
        _line, _layer, table, _choices = steering.refresh()
        assert [row[0] for row in table] == [1] and table[0][4].startswith("I love this")
        status = steering.status_line()
        assert status.startswith("1 steering vector active.")
        assert "⟳ Capturing a vector: 16 of 200 prompts" in status, status
        assert "capturing a vector is using the model (16 of 200 prompts)" in jobs.waiting_note()
        second_page = Page(steering.attach())  # follows the running capture
        assert steering.cancel() == "✕ Cancelling capturing a vector: it stops within seconds…"
        gate.release()
        final = first_page.done()[-1]
    assert final[2] == "✕ The capture was cancelled after 16 of 200 prompts; nothing was changed."
    followed = second_page.done()
    assert any("16 of 200 prompts" in view[2] for view in followed[:-1])
    assert followed[-1][2] == final[2]  # the outcome, on the reloaded page too
    assert steerer.vectors == (mine,) and steerer.steered_layers() == [1]
    assert not session.lock.locked() and jobs.running is None
    assert not steerer.has_captured(MANY.splitlines())  # nothing half-captured is kept


def test_a_long_capture_waits_for_go_on_without_holding_the_model(app):
    steering, _explore, jobs, session = app
    jobs.limits = JobLimits(confirm_seconds=0)  # every job counts as long
    first = steering.add_vector("A calm and quiet lake.\nA still morning.", "", 2, 1.0)
    question = next(view for view in first if view[2].startswith("⏸"))[2]
    assert question.startswith("⏸ Capturing a vector would take about 1 s (reads 2 prompts (")
    assert "click **Go on** to run it, or **Cancel**" in question
    assert not session.lock.locked()  # chat and vector changes go on while it asks
    *_, busy = steering.add_vector("Another prompt here.", "", 2, 1.0)  # a second click
    assert busy[2].startswith("⚠ The model is busy with capturing a vector")
    assert jobs.running.gate.asking  # that click answered nothing
    assert steering.go_on() == "▶ Going on: capturing a vector runs now."
    *_, final = first
    assert final[2].startswith("✓ Added vector #2: layer 2"), final[2]
    assert steering.go_on() == "Nothing waits for a go-ahead."


def test_an_unanswered_question_cancels_the_job(app):
    steering, _explore, jobs, session = app
    jobs.limits = JobLimits(confirm_seconds=0, answer_seconds=0.2)  # the page went away
    *_, final = steering.add_vector("A calm and quiet lake.", "", 2, 1.0)
    assert final[2] == "✕ Capturing a vector was cancelled; nothing was changed."
    assert len(session.current().steerer.vectors) == 1 and not session.lock.locked()


def test_a_job_over_the_operators_limit_is_refused_before_it_runs(app):
    steering, _explore, jobs, session = app
    jobs.limits = JobLimits(refuse_seconds=1e-9)
    *_, final = steering.add_vector(MANY, "", 1, 1.0)
    assert final[2].startswith(
        "⚠ Could not add the steering vector: Capturing a vector would take about 1 s "
        "(reads 200 prompts ("
    ), final[2]
    assert "this app refuses jobs estimated over 1 s (a limit its operator set)" in final[2]
    steerer = session.current().steerer
    assert len(steerer.vectors) == 1 and not steerer.has_captured(MANY.splitlines())


def test_one_job_at_a_time_across_tabs(app):
    steering, explore, _jobs, session = app
    steerer = session.current().steerer
    (vector,) = steerer.vectors
    with slow_layer(steerer, 2, Gate(after=2)) as gate:
        capture = Page(steering.add_vector(MANY, "", 1, 1.0))
        assert gate.blocked.wait(60)
        *_, scan = explore.scan(vector.id, "dprime")
        assert scan[-1].startswith("⚠ The model is busy with capturing a vector"), scan[-1]
        assert explore.cancel().startswith("✕ Cancelling capturing a vector")  # from Explore
        gate.release()
        assert capture.done()[-1][2].startswith("✕ The capture was cancelled")
    *_, scan = explore.scan(vector.id, "dprime")  # its own cancel event: not cancelled
    assert scan[-1].startswith("✓ Layers "), scan[-1]


def test_a_map_is_followed_by_a_reloaded_page_and_cancelled_there(app):
    """A reloaded page lost a running map, and its Cancel said "Cancelling…"
    for ever; a map cancelled while another Explore job started ran to the
    end (one cancel event shared by the tab)."""
    _steering, explore, jobs, session = app
    steerer = session.current().steerer
    (vector,) = steerer.vectors
    grid = (vector.id, "0, 1, 2, 3", "0.5, 1", 3)
    with slow_layer(steerer, 3, Gate(after=10**9)) as counter:  # how often a map runs layer 3
        assert list(explore.map(*grid))[-1][-1] == "✓ Done: 8 of 8 cells."
    second_row = counter.calls - 4 + 2  # each of the 4 rows runs it once, after the set-up
    with slow_layer(steerer, 3, Gate(after=second_row)) as gate:
        first_page = Page(explore.map(*grid))
        assert gate.blocked.wait(60)  # the second row waits: 2 cells are done
        reloaded = Page(explore.attach())  # the page's load event
        assert explore.cancel() == "✕ Cancelling computing the map: it stops within seconds…"
        gate.release()
        views = first_page.done()
    job = jobs.latest
    assert views[-1][-1] == "✕ Cancelled: 4 of 8 cells." and job.cancel_event.is_set()
    followed = reloaded.done()
    states = [v[5] for v in followed if isinstance(v[5], MapState)]
    assert states and len(states[-1].cells) == 4  # the map, in the reloaded page's outputs
    assert followed[-1][12] == "✕ Cancelled: 4 of 8 cells."
    again = list(explore.map(vector.id, "1, 3", "0.5", 3))  # a new job, its own event
    assert again[-1][-1] == "✓ Done: 2 of 2 cells." and not jobs.latest.cancel_event.is_set()
    assert steerer.vectors == (vector,) and not session.lock.locked()


def test_a_page_loading_with_no_explore_job_changes_only_its_status(app):
    _steering, explore, _jobs, _session = app
    (view,) = list(explore.attach())
    assert len(view) == 14 and all(v == {"__type__": "update"} for v in view)


def test_side_by_side_stops_mid_reply_on_cancel(app):
    _steering, explore, jobs, session = app
    steerer = session.current().steerer
    (vector,) = steerer.vectors
    *_, (_p, _t, state, *_rest) = explore.map(vector.id, "1", "0.5", 2)
    with slow_layer(steerer, 0, Gate(after=3)) as gate:  # the unsteered reply's 2nd token waits
        page = Page(explore.compare(vector.id, ["1:0.5"], "Say something.", 60, state))
        assert gate.blocked.wait(60)
        explore.cancel()
        gate.release()
        table, status = page.done()[-1]
    assert status == "✕ Cancelled."
    # stopped at the next token (not after 60), and the cell's reply never started
    assert gate.calls == 3, gate.calls
    assert not isinstance(table, list) or table[1][1] == ""
    assert jobs.running is None and not session.lock.locked()


def test_a_task_vector_rebuild_reports_progress_and_stops_on_cancel(app, tokenizer):
    """A task-pairs direction rebuilt for every layer (Inspect) had no cap,
    progress or cancel: Explore's Cancel said "Cancelling…" and nothing stopped."""
    from steering.extract import VectorSource

    _steering, explore, jobs, session = app
    steerer = session.current().steerer
    items = [
        [f"Question {i}: is this review happy?", " yes", [" no", " maybe"]] for i in range(40)
    ]
    source = VectorSource(
        "task_pairs", {"task": "t", "split": "training", "items": items, "doc_keys": []}
    )
    from steering.capture import capture

    task_vector = capture(steerer, source, 1, 1.0)
    steerer.add(task_vector)
    steerer.activations.clear()  # as after a restart: the answers must be read again
    with slow_layer(steerer, 2, Gate(after=2)) as gate:  # the second batch waits
        page = Page(explore.inspect(task_vector.id))
        assert gate.blocked.wait(60)
        assert "16 of 120 answers" in (jobs.busy_line() or "")
        explore.cancel()
        gate.release()
        views = page.done()
    assert any("⟳ Inspecting the vector: 16 of 120 answers" in v[-1] for v in views), views
    assert views[-1][-1].startswith("✕ The capture was cancelled after 16 of 120 prompts")
    assert len(steerer.vectors) == 2 and not session.lock.locked()


def test_a_job_reports_a_failure_and_frees_the_model(app):
    _steering, explore, jobs, session = app
    *_, view = explore.inspect("no-such-id")
    assert view[-1].startswith("⚠ Could not inspect the vector: There is no active vector with id")
    assert jobs.running is None and not session.lock.locked()


def test_a_capture_shows_the_users_vectors_to_readers(tiny_steerer):
    """During a capture the Steerer runs unsteered; a page reading the
    vectors then must still see the user's, not none."""
    mine = capture_vector(tiny_steerer, ["I love this day"], 1, 2.0)
    tiny_steerer.add(mine)
    seen: list[Any] = []

    def progress(done: int, total: int) -> None:
        seen.append((tiny_steerer.vectors, tiny_steerer.user_vectors))

    tiny_steerer.prompt_activations(["one new prompt", "and another"], on_progress=progress)
    assert seen == [((), (mine,))]  # the model ran unsteered; readers saw the user's vector
    assert tiny_steerer.user_vectors == (mine,) == tiny_steerer.vectors


def _form(vector_ids: list[str], **changes: Any) -> list[Any]:
    """The Optimize tab's inputs in the form's order (small settings)."""
    from ui.optimize_form import NAMES, TASKS_DIR

    values = {
        "task": "steer_sentiment", "task_folder": str(TASKS_DIR), "metric": "acc", "limit": 4,
        "batch_size": 4, "particles": 2, "iterations": 6, "layer_min": 0, "layer_max": 3,
        "unit": "alpha", "strength_min": -0.4, "strength_max": 0.4, "alpha_min": -4.0,
        "alpha_max": 4.0, "c1": 0.5, "c2": 0.3, "w": 0.9, "velocity_limit": 0.25, "seed": 0,
        "heldout_task": "",
        "heldout_limit": 100, "holdout_fraction": 0.0, "confirm_fraction": 0.5, "finalists": 2,
        "significance": 0.05, "objective": "target", "kl_budget": 0.5, "guard_task": "",
        "max_guard_drop": 5.0, "workers": 0, "budget": 0, "strategy": "pso",
    }
    values.update(changes)
    return [vector_ids, *(values[name] for name in NAMES)]


def test_a_cancelled_run_is_offered_for_resuming_without_a_restart(app, tmp_path):
    """The Resume offer was computed when the page was built: after a Cancel
    it came only after a restart. It is asked of the server now, and the
    running run's own journal is not offered."""
    from ui.optimize_tab import OptimizeActions

    _steering, _explore, jobs, session = app
    optimize = OptimizeActions(session, tmp_path / "results", jobs=jobs)
    assert optimize.resume_offer()[0] == ""
    (vector,) = session.current().steerer.vectors
    run = optimize.optimize(*_form([vector.id]))
    for view in run:
        if "2 of 16 evaluations" in view[0]:
            assert optimize.resume_offer()[0] == ""  # running, not interrupted
            assert optimize.cancel().startswith("✕ Cancelling")
    assert "cancelled" in view[0]
    offer, button = optimize.resume_offer()
    assert "can be resumed" in offer and button["visible"] is True


def test_every_page_load_asks_the_server(tiny_session):
    """The Steering status line, the vectors, the Resume offer and a running
    Explore or Steering job come from the server on every page load (they
    were the text built when the app started)."""
    import gradio as gr

    from ui.app import build_tabs

    with gr.Blocks() as demo:
        tabs = build_tabs(tiny_session)
    loads = [
        d for d in demo.config["dependencies"] if any(t[1] == "load" for t in d["targets"])
    ]
    outputs = [set(d["outputs"]) for d in loads]
    s, e, o = tabs.steering, tabs.explore, tabs.optimize
    assert any({s.model_line._id, s.table._id} <= out for out in outputs)
    assert any({s.table._id, s.status._id} <= out for out in outputs)  # a capture, followed
    assert any({e.map_state._id, e.status._id} <= out for out in outputs)  # a map, followed
    assert any(o.progress._id in out for out in outputs)
    then = [d for d in demo.config["dependencies"] if o.resume_note._id in d["outputs"]]
    assert any(d["trigger_after"] is not None for d in then)  # after the load's attach
    assert tabs.jobs is tabs.steering_actions.jobs.registry is tabs.explore_actions.jobs.registry
    assert tabs.jobs is tabs.optimize_actions.jobs
