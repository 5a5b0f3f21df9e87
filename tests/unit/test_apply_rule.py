"""One rule for applying a result (optimize/run/apply_rule.py), through each
of its entry points: "Apply best", a point of the front, and the Saved tab's
"Load vectors / apply result". The Saved tab once applied a run whose best
lost 70 points, and a +0.0 result, that Apply best refused. Results are
built by hand on the tiny Llama (no optimization runs here), so each case is
exactly the one it names."""

from __future__ import annotations

import dataclasses
import json

import pytest

from optimize import Evaluation, FitnessConfig, Metrics, PsoConfig, SearchSpace
from optimize.errors import ApplyRefused
from optimize.guard.objective import KL
from optimize.run.apply_rule import apply_result, refusal
from optimize.run.results import OptimizationResult
from optimize.scoring.placing import record_of
from steering import capture_vector
from steering.persist import DataFolder
from steering.session import ModelSession
from ui.jobs import JobRegistry
from ui.optimize_tab import OptimizeActions
from ui.saved_tab import SavedActions


def _result(steerer, vector, best, baseline=0.5, **changes):
    """A run that scored the unsteered baseline and `best` = (layer, alpha, score);
    `best` held on the confirmation documents (12 fixed, 1 broken), so it is
    recommended whenever it beat the baseline."""
    from optimize.guard.split import paired_test
    from optimize.guard.verdict import Confirmation

    layer, alpha, score = best
    base = Evaluation(-1, -1, (), (), baseline, 0.05, 0.1, metrics=Metrics({KL: 0.0}))
    found = Evaluation(0, 0, (layer,), (alpha,), score, 0.05, 0.1, metrics=Metrics({KL: 0.1}))
    test = paired_test([0.0] * 13, [1.0] * 12 + [-1.0])
    result = OptimizationResult(
        baseline=base, best=found, history=[base, found], vector_indices=(0,),
        vectors=(record_of(0, vector),), seed=0,
        fitness=FitnessConfig(task="steer_sentiment"),
        space=SearchSpace(layer_min=0, layer_max=3, alpha_min=-4.0, alpha_max=4.0),
        pso=PsoConfig(particles=1, iterations=1), model=steerer.info.name,
        num_layers=steerer.info.num_layers, metric="acc", higher_is_better=True, samples=4,
        cancelled=False, wall_seconds=1.0, confirm_planned=True,
        confirmation=Confirmation(13, "13", base, (found,), (test,), 0.05),
    )
    return dataclasses.replace(result, **changes)


@pytest.fixture
def world(tiny, tmp_path):
    """An app's Optimize and Saved handlers on one registry, a data folder, and one vector."""
    session = ModelSession(lambda: tiny, data=DataFolder(tmp_path / "data"))
    steerer = session.current().steerer
    steerer.reset()
    vector = capture_vector(steerer, ["I love this day", "so happy"], 1, 2.0, ["I hate it", "sad"])
    steerer.add(vector)
    jobs = JobRegistry()
    yield session, steerer, vector, OptimizeActions(session, tmp_path, jobs=jobs), SavedActions(
        session, jobs
    )
    steerer.reset()


def _saved(session, result, name):
    folder = session.data.results_dir
    folder.mkdir(parents=True, exist_ok=True)
    result.save(folder / name)
    return f"result/{name}"


def _cases(steerer, vector):
    """(name, result, the reason it is refused with) for each kind of refusal."""
    other_model = dataclasses.replace(_result(steerer, vector, (2, 1.5, 0.8)), model="another")
    stranger = dataclasses.replace(vector, id="someone-elses")
    return [
        ("lost 70 points", _result(steerer, vector, (2, 3.0, 0.1), baseline=0.8),
         ("No setting beat the unsteered model: the highest-scoring one (layer 2, alpha 3) "
         "scored 0.100 against the baseline's 0.800")),
        ("gained +0.0", _result(steerer, vector, (2, 1.5, 0.5)),
         ("No setting beat the unsteered model: the highest-scoring one (layer 2, alpha 1.5) "
         "scored 0.500")),
        ("alpha past the limit", _result(steerer, vector, (2, 1e6, 0.8)),
         "The setting gives vector #1 alpha 1e+06, outside the limit of ±100."),
        ("a layer the model lacks", _result(steerer, vector, (40, 1.5, 0.8)),
         "The setting puts vector #1 at layer 40, outside the run's layers 0 to 3."),
        ("another model", other_model, "This result was found on another (4 layers)"),
        ("other vectors", _result(steerer, stranger, (2, 1.5, 0.8)),
         "The active vectors changed since this optimization ran"),
    ]


def test_the_rule_names_why_and_lets_a_real_gain_through(world):
    _session, steerer, vector, *_ = world
    for name, result, why in _cases(steerer, vector):
        found = refusal(result, None, steerer.info, steerer.vectors)
        assert found is not None and found.startswith(why), (name, found)
        with pytest.raises(ApplyRefused) as refused:
            apply_result(steerer, result)
        assert str(refused.value) == found
        assert steerer.vectors == (vector,), name
    good = _result(steerer, vector, (2, 1.5, 0.8))
    assert refusal(good, None, steerer.info, steerer.vectors) is None
    (applied,) = apply_result(steerer, good)
    assert (applied.layer, applied.alpha, applied.id) == (2, 1.5, vector.id)


def test_apply_best_a_point_and_saved_refuse_alike(world):
    """The same refusals, word for word, through each button."""
    session, steerer, vector, optimize, saved = world
    for number, (name, result, why) in enumerate(_cases(steerer, vector)):
        choice = _saved(session, result, f"case-{number}.json")
        best = list(optimize.apply(result))[-1][3]
        point = list(optimize.front.apply_point(result, 1))[-1][3]
        from_file = list(saved.open(choice))[-1][2]
        for button, status in (("Apply best", best), ("point", point), ("Saved", from_file)):
            assert status.startswith("⚠ Could not apply"), (name, button, status)
            assert why.split(" (")[0] in status, (name, button, status)
        assert steerer.vectors == (vector,), name
        assert not session.lock.locked() and optimize.jobs.running is None


def test_each_entry_point_applies_a_real_gain(world):
    session, steerer, vector, optimize, saved = world
    good = _result(steerer, vector, (2, 1.5, 0.8))
    status = list(optimize.apply(good))[-1][3]
    assert status.startswith("✓ Applied the best setting: #1 → layer 2 × 1.5")
    steerer.set_vectors([vector])
    status = list(optimize.front.apply_point(good, 1))[-1][3]
    assert status.startswith("✓ Applied point 1 of the front: #1 → layer 2 × 1.5")
    steerer.set_vectors([vector])
    status = list(saved.open(_saved(session, good, "good.json")))[-1][2]
    assert status.startswith("✓ Applied the best setting of good.json: #1 → layer 2 × 1.5")
    (applied,) = steerer.vectors
    assert (applied.layer, applied.alpha, applied.id) == (2, 1.5, vector.id)
    # kept in the data folder: the session survives a restart
    assert json.loads(session.data.index_file.read_text())["active"] == [vector.id]


def test_a_crafted_result_file_with_a_setting_it_never_scored_is_refused(world):
    session, steerer, vector, _optimize, saved = world
    good = _result(steerer, vector, (2, 1.5, 0.8))
    data = good.to_dict()
    data["best"]["alphas"] = [3.5]  # not what its history scored
    folder = session.data.results_dir
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "edited.json").write_text(json.dumps(data))
    status = list(saved.open("result/edited.json"))[-1][2]
    assert "That setting is not one this optimization scored" in status, status
    assert steerer.vectors == (vector,)
