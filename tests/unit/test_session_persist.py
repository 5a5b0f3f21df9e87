"""A restart loses nothing. The active vectors are kept
in the data folder after every change and restored on start (refused, and
named, when the model differs); saved vector files and result JSONs are
listed there and can be loaded or applied again."""

from __future__ import annotations

import errno
import json
import os

import pytest
import torch

from optimize import Evaluation, FitnessConfig, OptimizationResult, PsoConfig, SearchSpace
from optimize.run.results import VectorRecord
from steering import capture_vector, steerer_for
from steering.persist import DataFolder
from steering.session import ModelSession
from steering.store import save_vectors
from ui.saved_tab import SavedActions
from ui.steering_tab import SteeringActions


@pytest.fixture
def clean(tiny_steerer):
    return tiny_steerer


def _last(gen):
    *_, last = gen
    return last


def test_vectors_survive_a_restart_with_ids_and_provenance(tiny, clean, tmp_path):
    data = DataFolder(tmp_path)
    session = ModelSession(lambda: tiny, data=data)
    actions = SteeringActions(session, data.vectors_dir)
    _last(actions.add_vector("I love it\nso happy", "I hate it", 2, 1.5))
    _last(actions.add_vector("calm and quiet", "", 1, -0.5))
    before = clean.vectors
    assert data.active_file.is_file()
    index = json.loads(data.index_file.read_text())
    assert index["active"] == [v.id for v in before] and index["model"]["name"] == "tiny-llama"

    clean.reset()  # the process ends: nothing in memory
    restarted = ModelSession(lambda: tiny, data=DataFolder(tmp_path))
    current = restarted.current()
    assert current.notice == f"Restored 2 steering vector(s) of the last session from {tmp_path}."
    after = current.steerer.vectors
    assert [(v.id, v.method, v.layer, v.alpha, v.source) for v in after] == [
        (v.id, v.method, v.layer, v.alpha, v.source) for v in before
    ]
    assert all(torch.equal(a.direction, b.direction) for a, b in zip(after, before, strict=True))
    assert restarted.current().notice == ""  # restored once, not on every action

    _last(SteeringActions(restarted).reset_vectors())  # a reset is kept too
    clean.reset()
    assert ModelSession(lambda: tiny, data=DataFolder(tmp_path)).current().notice == ""
    assert clean.vectors == ()


def test_vectors_of_another_model_are_refused_named_and_kept(
    tiny, tiny_factory, tiny_gpt2, clean, tmp_path
):
    data = DataFolder(tmp_path)
    clean.add(capture_vector(clean, ["sunny and warm"], 3, 2.0, ["rainy"]))
    assert data.keep(clean) == ""
    other = tiny_factory(1)  # same size, another model
    notice = ModelSession(lambda: other, data=DataFolder(tmp_path)).current().notice
    assert notice.startswith(
        "Not restored: 1 vector(s) of the last session were made for tiny-llama "
        "(hidden size 32, 4 layers), not tiny-llama-1"
    )
    assert "layer 3 “sunny and warm”" in notice
    other_steerer = steerer_for(other.model, other.tokenizer, other.name)
    assert other_steerer.vectors == ()
    [kept] = [f for f in data.saved() if f.kind == "vectors"]
    assert kept.name.startswith("session-made-for-tiny-llama-") and str(kept.path) in notice
    assert not data.active_file.exists()  # the next save cannot overwrite them

    assert data.keep(clean) == ""
    gpt2 = ModelSession(lambda: tiny_gpt2, data=DataFolder(tmp_path)).current()
    assert "(hidden size 32, 4 layers), not tiny-gpt2 (hidden size 32, 3 layers)" in gpt2.notice
    assert gpt2.steerer.vectors == ()


def test_a_session_that_cannot_be_written_warns_and_loses_nothing(
    tiny, clean, tmp_path, monkeypatch
):
    data = DataFolder(tmp_path)
    session = ModelSession(lambda: tiny, data=data)
    actions = SteeringActions(session, data.vectors_dir)
    _last(actions.add_vector("first", "", 1, 1.0))
    kept = data.active_file.read_bytes()

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("steering.persist.save_vectors", full)
    _table, _choices, status = _last(actions.add_vector("second", "", 2, 1.0))
    assert status.startswith("✓ Added vector #2")
    assert status.endswith(
        f"⚠ Could not save the session in {data.session_dir}: No space left on device."
    )
    assert len(clean.vectors) == 2 and data.active_file.read_bytes() == kept


def test_saved_files_are_listed_and_opened_by_name(tiny, clean, tmp_path):
    data = DataFolder(tmp_path)
    session = ModelSession(lambda: tiny, data=data)
    session.current()
    joy = capture_vector(clean, ["I love this day"], 1, 2.0, ["I hate this day"])
    calm = capture_vector(clean, ["calm and quiet"], 2, 0.5)
    save_vectors(data.vectors_dir / "mine.safetensors", [joy, calm], clean.info)
    from optimize.guard.split import paired_test
    from optimize.guard.verdict import Confirmation

    baseline = Evaluation(-1, -1, (), (), 0.5, 0.05, 1.0)
    best = Evaluation(0, 0, (3,), (1.5,), 0.75, 0.05, 1.0)
    confirmed = paired_test([0.0] * 13, [1.0] * 12 + [-1.0])  # the gain held on other documents
    result = OptimizationResult(
        baseline=baseline,
        best=best,
        history=[baseline, best],
        vector_indices=(0,),
        vectors=(VectorRecord(0, 1, 2.0, ("I love this day",), ("I hate this day",), joy.id),),
        seed=1,
        fitness=FitnessConfig("steer_sentiment", limit=4),
        space=SearchSpace(0, 3, -4.0, 4.0),
        pso=PsoConfig(particles=1, iterations=1, seed=1),
        model="tiny-llama",
        num_layers=4,
        metric="acc,none",
        higher_is_better=True,
        samples=4,
        cancelled=False,
        wall_seconds=1.0,
        confirmation=Confirmation(13, "13", baseline, (best,), (confirmed,), 0.05),
        confirm_planned=True,
    )
    data.results_dir.mkdir()
    result.save(data.results_dir / "optimization-1.json")
    actions = SavedActions(session)
    values = [value for _label, value in actions.choices()]
    assert sorted(values) == ["result/optimization-1.json", "vectors/mine.safetensors"]

    _t, _c, status = _last(actions.open("vectors/mine.safetensors"))
    assert status.startswith("✓ Loaded 2 vector(s) from mine.safetensors")
    assert [v.id for v in clean.vectors] == [joy.id, calm.id]

    _t, _c, status = _last(actions.open("result/optimization-1.json"))
    assert "✓ Applied the best setting of optimization-1.json: #1 → layer 3 × 1.5" in status
    assert [(v.id, v.layer, v.alpha) for v in clean.vectors] == [
        (joy.id, 3, 1.5),
        (calm.id, 2, 0.5),
    ]

    for bad in ("vectors/../../etc/passwd", "result/nope.json", None):
        _t, _c, status = _last(actions.open(bad))
        assert status.startswith("⚠"), status
    assert [(v.id, v.layer) for v in clean.vectors] == [(joy.id, 3), (calm.id, 2)]
