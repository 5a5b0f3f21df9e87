"""The Explore tab's handlers on the tiny Llama, without a browser."""

from __future__ import annotations

import threading

import pytest
from matplotlib.figure import Figure

from steering import capture_vector
from ui.explore_tab import ExploreActions, MapState

CONCEPT = ["I love this, it is wonderful", "What a happy bright day"]
CONTRAST = ["I hate this, it is awful", "What a sad grey day"]


@pytest.fixture
def explore(tiny_session):
    steerer = tiny_session.current().steerer
    vector = capture_vector(steerer, CONCEPT, 1, 1.0, CONTRAST)
    steerer.add(vector)
    return ExploreActions(tiny_session), steerer, vector


def last(iterator):
    items = list(iterator)
    assert items
    return items[-1]


def test_scan_gives_a_chart_and_a_range_for_the_optimize_form(explore):
    actions, _steerer, vector = explore
    plot, layer_range, button, status = last(actions.scan(vector.id, "dprime"))
    assert isinstance(plot, Figure)
    low, high = layer_range
    assert 0 <= low <= high <= 3 and "separate the concept and contrast prompts most" in status
    assert button["interactive"] is True
    assert actions.use_range(layer_range)[:2] == (low, high)
    assert "scan first" in actions.use_range(None)[2]


def test_scan_without_a_chosen_vector_or_contrast_says_why(explore):
    actions, steerer, _vector = explore
    assert "Choose a vector" in last(actions.scan(None, "dprime"))[-1]
    plain = capture_vector(steerer, ["a cat sat"], 2, 1.0)
    steerer.add(plain)
    assert "no contrast prompts" in last(actions.scan(plain.id, "dprime"))[-1]
    assert "no active vector" in last(actions.scan("nope", "dprime"))[-1]


def test_map_fills_row_by_row_and_changes_no_vector(explore):
    actions, steerer, vector = explore
    before = steerer.vectors
    views = list(actions.map(vector.id, "1, 3", "0.5, 1", 3))
    counts = [len(v[2].cells) for v in views if isinstance(v[2], MapState)]
    assert counts == [0, 2, 4, 4]
    plot, rows, _state, cells, _compare_cells, status = views[-1]
    assert isinstance(plot, Figure) and len(rows) == 4 and status.startswith("✓ Done")
    assert [c[1] for c in cells["choices"]] == ["1:0.5", "1:1", "3:0.5", "3:1"]
    assert steerer.vectors == before


@pytest.mark.parametrize(
    "layers, strengths, neutral, message",
    [
        ("1, x", "", 3, "Layers must be numbers"),
        ("1", "0.5", 0, "Neutral sentences must be"),
        ("1", "0.5", 2.5, "Neutral sentences must be"),
        ("1, 1", "0.5", 3, "must differ"),
        ("9", "0.5", 3, "out of range"),
    ],
)
def test_bad_map_input_is_refused_with_a_message(explore, layers, strengths, neutral, message):
    actions, steerer, vector = explore
    before = steerer.vectors
    assert message in last(actions.map(vector.id, layers, strengths, neutral))[-1]
    assert steerer.vectors == before


def test_cancel_stops_the_map_after_the_current_row(explore, monkeypatch):
    from steering.explore_map import StrengthMap

    actions, _steerer, vector = explore
    row = StrengthMap.row

    def row_then_cancel(self, *args):
        cells = row(self, *args)
        actions.cancel()  # as if the user clicked Cancel while this row ran
        return cells

    monkeypatch.setattr(StrengthMap, "row", row_then_cancel)
    views = list(actions.map(vector.id, "0, 1, 2, 3", "1", 2))
    assert views[-1][-1] == "✕ Cancelled: 1 of 4 cells."
    assert len(views[-1][2].cells) == 1


def test_apply_cell_sets_the_vectors_layer_and_alpha(explore):
    actions, steerer, vector = explore
    assert "Compute a map" in last(actions.apply(vector.id, "1:1", None))[-1]
    state = last(actions.map(vector.id, "2", "0.5", 2))[2]
    assert "Choose a cell" in last(actions.apply(vector.id, None, state))[-1]
    _choices, status = last(actions.apply(vector.id, "2:0.5", state))
    assert "layer 2" in status
    (moved,) = steerer.vectors
    assert moved.id == vector.id and moved.layer == 2
    assert moved.alpha == pytest.approx(state.cells[0].alpha)


def test_side_by_side_streams_unsteered_and_each_cell(explore):
    actions, steerer, vector = explore
    before = steerer.vectors
    state = last(actions.map(vector.id, "1, 2", "1", 2))[2]
    views = list(actions.compare(vector.id, ["1:1", "2:1"], "Hello there", 4, state))
    table, status = views[-1]
    assert status == "✓ Done."
    assert [row[0] for row in table] == [
        "unsteered",
        "layer 1 · strength 1",
        "layer 2 · strength 1",
    ]
    assert len(views) > 3  # streamed
    assert steerer.vectors == before
    assert "one to four" in last(actions.compare(vector.id, [], "Hi", 4, state))[-1]
    assert "prompt" in last(actions.compare(vector.id, ["1:1"], " ", 4, state))[-1]
    assert "whole number" in last(actions.compare(vector.id, ["1:1"], "Hi", 2.5, state))[-1]


def test_inspector_shows_norms_cosines_and_logit_lens(explore):
    actions, steerer, vector = explore
    steerer.add(capture_vector(steerer, ["a cat sat"], 2, 1.0))
    plot, cosines, lens, status = last(actions.inspect(vector.id))
    assert isinstance(plot, Figure) and status.startswith("✓")
    assert cosines["headers"] == ["", "#1", "#2"] and cosines["value"][0][1] == 1.0
    assert len(lens) == 10 and all(row[1] >= row[3] for row in lens)


def test_model_jobs_wait_for_the_lock(explore):
    actions, _steerer, vector = explore
    lock = actions.session.lock
    lock.acquire()
    views = actions.scan(vector.id, "dprime")
    first = next(views)
    assert "Waiting for the model" in first[-1]
    threading.Timer(0.05, lock.release).start()
    assert "separate the concept and contrast prompts most" in last(views)[-1]


def test_the_app_has_the_explore_tab_and_its_range_fills_the_optimize_bounds(tiny_session):
    import gradio as gr

    from ui.app import build_tabs

    with gr.Blocks() as demo:
        tabs = build_tabs(tiny_session)
    assert tabs.explore is not None and tabs.optimize is not None
    use_range = tabs.explore.use_range._id
    wired = [
        d
        for d in demo.config["dependencies"]
        if [use_range, "click"] in [list(t) for t in d["targets"]]
    ]
    assert len(wired) == 1
    outputs = wired[0]["outputs"]
    fields = tabs.optimize.fields
    assert outputs[:2] == [fields["layer_min"]._id, fields["layer_max"]._id]


def test_the_map_says_what_it_will_score_and_how_long_before_it_starts(explore):
    """Layers and strengths are chosen for you (blank layers: spread over the
    model) and the map says its cells and an estimate before it starts."""
    actions, _steerer, vector = explore
    line = actions.map_estimate(vector.id, "", "0.1, 0.2", 2)
    assert line.startswith("The map scores 8 cells: layers 0, 1, 2, 3 (chosen for you"), line
    assert "strengths 0.1, 0.2" in line and "About " in line and "on this machine" in line
    assert actions.map_estimate(vector.id, "1", "0.1", 2).startswith("The map scores 1 cell:")
    assert actions.map_estimate(vector.id, "x", "0.1", 2) == ""  # the map's own check says why
    assert actions.map_estimate(None, "", "", 2) == ""


def test_the_logit_lens_marks_word_pieces():
    from ui.explore_view import lens_token

    assert lens_token(" joy") == "␣joy" and lens_token("ful") == "ful"
    assert lens_token("\n") == "\\n"
