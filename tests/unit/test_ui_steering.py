"""Steering tab handlers on the tiny model: every refused input shows a message
and leaves the active vectors exactly as they were."""

from __future__ import annotations

import math
import threading
from pathlib import Path

import pytest

from steering.session import ModelSession
from ui import format as fmt
from ui.steering_tab import SteeringActions

JOY = "I am so happy today!\nWhat a wonderful surprise."
GRIEF = "I am so sad today.\nWhat a terrible loss."


def last(gen):
    """The final value a generator handler yields (each fills 3 outputs, or 2 for save)."""
    values = list(gen)
    assert values, "the handler yielded nothing"
    assert len({len(v) for v in values}) == 1 and len(values[0]) in (2, 3), values
    return values[-1]


@pytest.fixture
def session(tiny_session):
    return tiny_session


@pytest.fixture
def actions(session, tmp_path):
    return SteeringActions(session, tmp_path)


@pytest.fixture
def with_vector(actions):
    """Actions with one vector already active; returns (actions, that vector)."""
    _table, _, status = last(actions.add_vector(JOY, GRIEF, 1, 3.0))
    assert status.startswith("✓ Added vector #1"), status
    return actions, actions.session.current().steerer.vectors[0]


def active(actions):
    return actions.session.current().steerer.vectors


def assert_refused(status, *needles):
    assert status.startswith("⚠ Could not"), status
    assert status.endswith("Nothing was changed."), status
    for needle in needles:
        assert needle in status, status


def test_add_vector_lists_it(actions):
    table, choices, status = last(actions.add_vector(JOY, GRIEF, 2, 3.5))
    assert "layer 2, alpha 3.5" in status and "1 steering vector active" in status
    assert table == [
        [
            1,
            2,
            3.5,
            round(active(actions)[0].strength, 3),  # the strength, next to the raw alpha
            "I am so happy today! | What a wonderful surprise.",
            "I am so sad today. | What a terrible loss.",
            table[0][6],
        ]
    ]
    assert choices["choices"] == [(fmt.vector_label(1, active(actions)[0]), active(actions)[0].id)]
    vector = active(actions)[0]
    assert vector.layer == 2 and vector.alpha == 3.5 and len(vector.prompts) == 2


def test_add_vector_without_contrast_uses_the_plain_mean(actions):
    _, _, status = last(actions.add_vector("A calm, quiet evening by the lake.", "", 0, 1))
    assert "from 1 concept prompt." in status
    assert active(actions)[0].contrast_prompts == ()


@pytest.mark.parametrize("concept", ["", "   \n  \n", None])
def test_empty_concept_prompts_are_refused(with_vector, concept):
    actions, before = with_vector
    table, _, status = last(actions.add_vector(concept, GRIEF, 1, 3.0))
    assert_refused(status, "Enter at least one concept prompt")
    assert active(actions) == (before,)
    assert len(table) == 1


@pytest.mark.parametrize("layer", [4, 99, -1, 1.5, None])
def test_layer_out_of_range_is_refused(with_vector, layer):
    actions, before = with_vector
    _, _, status = last(actions.add_vector(JOY, GRIEF, layer, 3.0))
    assert_refused(status, "Layer")
    if layer in (4, 99, -1):
        assert "this model has layers 0 to 3" in status
    assert active(actions) == (before,)


@pytest.mark.parametrize("alpha", [math.nan, math.inf, -math.inf, 1e6, -101.0, "lots", None])
def test_bad_alpha_is_refused(with_vector, alpha):
    actions, before = with_vector
    _, _, status = last(actions.add_vector(JOY, GRIEF, 1, alpha))
    assert_refused(status, "Alpha must be a")
    assert active(actions) == (before,)


def test_prompt_longer_than_the_context_is_refused(with_vector):
    actions, before = with_vector
    long_prompt = " ".join(["word"] * 300)  # the tiny model's context is 128 tokens
    _, _, status = last(actions.add_vector(long_prompt, "", 1, 3.0))
    assert_refused(status, "longer than the model's context of 128 tokens")
    _, _, status = last(actions.add_vector(JOY, long_prompt, 1, 3.0))
    assert_refused(status, "longer than the model's context")
    assert active(actions) == (before,)


def test_remove_vector(with_vector):
    actions, first = with_vector
    last(actions.add_vector("Bright sunshine and laughter.", "", 2, 2.0))
    second = active(actions)[1]
    table, choices, status = last(actions.remove_vector(first.id))
    assert status.startswith("✓ Removed vector #1") and "1 steering vector active" in status
    assert active(actions) == (second,)
    assert table[0][1] == 2 and choices["choices"] == [(fmt.vector_label(1, second), second.id)]


@pytest.mark.parametrize("choice", [None, "", "0123456789ab", "#1 layer 1 × 3: gone"])
def test_remove_without_a_valid_choice_is_refused(with_vector, choice):
    actions, before = with_vector
    _, _, status = last(actions.remove_vector(choice))
    assert_refused(status)
    assert active(actions) == (before,)


def test_remove_with_a_stale_choice_is_refused(with_vector):
    """The list changed since the dropdown was filled: never remove the wrong vector."""
    actions, first = with_vector
    stale = first.id
    last(actions.reset_vectors())
    last(actions.add_vector("Bright sunshine and laughter.", "", 2, 2.0))
    now = active(actions)
    _, _, status = last(actions.remove_vector(stale))
    assert_refused(status, "choose the vector again")
    assert active(actions) == now


def test_reset_vectors(with_vector):
    actions, _ = with_vector
    table, choices, status = last(actions.reset_vectors())
    assert table == [] and choices["choices"] == []
    assert "Removed all 1 steering vector(s)" in status
    assert active(actions) == ()
    assert actions.session.current().steerer.steered_layers() == []


def test_save_and_load_round_trip(with_vector):
    actions, before = with_vector
    file, status = last(actions.save_vectors("my joy vectors"))
    assert file["visible"] is True
    path = file["value"]
    assert path.endswith("my-joy-vectors.safetensors") and "Saved 1 vector(s)" in status
    last(actions.reset_vectors())
    table, _, status = last(actions.load_vectors(path))
    assert status.startswith("✓ Loaded 1 vector(s) from my-joy-vectors.safetensors")
    (loaded,) = active(actions)
    assert loaded.same_as(before)
    assert len(table) == 1


def test_save_with_no_vectors_is_refused(actions):
    path, status = last(actions.save_vectors("empty"))
    assert_refused(status, "no steering vectors to save")
    assert path == {"__type__": "update"}


def test_save_with_no_file_name_is_refused(with_vector):
    actions, _ = with_vector
    _, status = last(actions.save_vectors("  "))
    assert_refused(status, "Give the file a name")


def test_load_without_a_file_is_refused(with_vector):
    actions, before = with_vector
    _, _, status = last(actions.load_vectors(None))
    assert_refused(status, "Choose a vector file")
    assert active(actions) == (before,)


@pytest.mark.parametrize(
    "content",
    [b"", b"not a safetensors file at all", b'\x08\x00\x00\x00\x00\x00\x00\x00{"a":1}'],
)
def test_corrupt_file_is_refused(with_vector, tmp_path, content):
    actions, before = with_vector
    bad = tmp_path / "corrupt.safetensors"
    bad.write_bytes(content)
    _, _, status = last(actions.load_vectors(str(bad)))
    assert_refused(status, "corrupt.safetensors")
    assert active(actions) == (before,)


def test_truncated_file_is_refused(with_vector, tmp_path):
    actions, before = with_vector
    path = last(actions.save_vectors("whole"))[0]["value"]
    data = Path(path).read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[: len(data) // 2])
    _, _, status = last(actions.load_vectors(str(cut)))
    assert_refused(status, "truncated or corrupt")
    assert active(actions) == (before,)


def test_file_for_another_model_is_refused(with_vector, tiny_gpt2, tmp_path):
    actions, _ = with_vector
    path = last(actions.save_vectors("llama"))[0]["value"]
    gpt2 = SteeringActions(ModelSession(lambda: tiny_gpt2), tmp_path)
    _, _, status = last(gpt2.load_vectors(path))
    assert_refused(status, "3 layers")
    assert gpt2.session.current().steerer.vectors == ()


def test_every_action_without_a_model_says_so(tmp_path):
    actions = SteeringActions(ModelSession(lambda: None), tmp_path)
    results = [
        last(actions.add_vector(JOY, GRIEF, 1, 3.0)),
        last(actions.remove_vector("0123456789ab")),
        last(actions.reset_vectors()),
        last(actions.load_vectors(str(tmp_path / "x.safetensors"))),
    ]
    for _table, _choices, status in results:
        assert_refused(status, "No model is loaded")
    _, status = last(actions.save_vectors("x"))
    assert_refused(status, "No model is loaded")
    line, _layer, table, _ = actions.refresh()
    assert "none" in line and "No model is loaded" in line and table == []


def test_refresh_shows_the_model_and_vectors(with_vector):
    actions, vector = with_vector
    line, layer, table, choices = actions.refresh()
    assert "tiny-llama · 4 layers (0–3)" in line
    assert layer["maximum"] == 3
    assert len(table) == 1 and choices["choices"] == [(fmt.vector_label(1, vector), vector.id)]


def test_actions_wait_for_the_model_lock_and_say_so(actions):
    """While another job holds the lock (an optimization, a reply), a vector
    change waits, tells the user, and happens only after the lock is free."""
    lock = actions.session.lock
    lock.acquire()
    gen = actions.add_vector(JOY, GRIEF, 1, 3.0)
    try:
        _, _, status = next(gen)
        assert status == fmt.WAITING
        assert active(actions) == ()
    finally:
        lock.release()
    _, _, status = last(gen)
    assert status.startswith("✓ Added vector #1")


def test_model_work_runs_under_the_lock(actions, monkeypatch):
    from ui import steering_tab

    seen = []
    real = steering_tab.capture

    def spy(*args, **kwargs):
        seen.append(actions.session.lock.locked())
        return real(*args, **kwargs)

    monkeypatch.setattr(steering_tab, "capture", spy)
    last(actions.add_vector(JOY, GRIEF, 1, 3.0))
    assert seen == [True]
    assert not actions.session.lock.locked()


def test_unexpected_errors_are_shown_and_change_nothing(with_vector, monkeypatch):
    from ui import steering_tab

    actions, before = with_vector

    def broken(*args, **kwargs):
        raise RuntimeError("CUDA out of memory")

    monkeypatch.setattr(steering_tab, "capture", broken)
    _, _, status = last(actions.add_vector(JOY, GRIEF, 1, 3.0))
    assert "unexpected error RuntimeError: CUDA out of memory" in status
    assert active(actions) == (before,)
    assert not actions.session.lock.locked()


def test_concurrent_adds_run_one_at_a_time(actions):
    """Three users adding at once: a capture is a job of the app, so one runs
    and the others are told at once that the model is busy (they no longer
    queue behind it for as long as it takes); nothing interleaves."""
    statuses: list[str] = []
    errors = []

    def add(text):
        try:
            statuses.append(last(actions.add_vector(text, "", 1, 1.0))[2])
        except Exception as exc:  # noqa: BLE001 - reported by the assert below
            errors.append(exc)

    threads = [
        threading.Thread(target=add, args=(f"Sentence number {i} is here.",)) for i in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    added = [s for s in statuses if s.startswith("✓ Added vector #")]
    refused = [s for s in statuses if "The model is busy with capturing a vector" in s]
    assert len(added) >= 1 and len(added) + len(refused) == 3, statuses
    assert len(active(actions)) == len(added)
    assert not actions.session.lock.locked()


def test_load_example_fills_the_form_and_changes_no_vector(actions):
    from presets import load_preset

    preset = load_preset("sentiment")
    concept, contrast, layer, alpha, status = actions.load_example()
    assert concept.splitlines() == list(preset.concept) and len(preset.concept) >= 4
    assert contrast.splitlines() == list(preset.contrast) and len(preset.contrast) >= 4
    # the tiny model has layers 0 to 3: the preset's layer 8 is brought inside it
    assert (layer, alpha) == (3, preset.alpha)
    assert status.startswith("✓ Filled in the example") and "Add steering vector" in status
    assert "has no layer 8" in status and "measured on SmolLM2-135M-Instruct" in status
    assert active(actions) == ()
    # the filled-in form adds the example's vector
    _table, _, added = last(actions.add_vector(concept, contrast, layer, alpha))
    assert added.startswith("✓ Added vector #1"), added
    (vector,) = active(actions)
    assert vector.prompts == preset.concept and vector.contrast_prompts == preset.contrast


def test_load_example_on_a_model_it_fits_and_a_missing_preset(actions):
    from ui.steering_tab import SteeringActions

    class Info:
        name, num_layers = "SmolLM2-135M-Instruct", 30

    fits = SteeringActions(actions.session, None)
    fits.model_facts = lambda: (Info, (), "")
    *_, layer, _alpha, status = fits.load_example()
    assert layer == 8 and status.startswith("✓") and "has no layer" not in status
    assert "measured on" not in status

    keep = {"__type__": "update"}
    *fields, status = actions.load_example("no_such_preset")
    assert fields == [keep] * 4
    assert status.startswith("⚠ Could not load the example") and "no_such_preset" in status
