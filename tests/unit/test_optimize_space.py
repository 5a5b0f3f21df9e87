"""Model-free tests of the optimizer: the search-space codec, the configs, the
swarm loop on a known function (pyswarms' sphere), and the result file."""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import random
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

from optimize import (
    Evaluation,
    FitnessConfig,
    HeldOutScores,
    OptimizationResult,
    PsoConfig,
    SearchSpace,
    Setting,
    round_half_away,
    swarm_search,
)
from optimize.search.strategies._pyswarms import import_pyswarms
from steering.errors import InvalidInputError
from tests.support.results import sample_result

# A plain `import pyswarms` would write ./report.log and reconfigure logging.
sphere = import_pyswarms("pyswarms.utils.functions.single_obj").sphere


# ---------------------------------------------------------------- rounding


@pytest.mark.parametrize(
    ("value", "decimals", "expected"),
    [
        (2.5, 0, 3.0),
        (-2.5, 0, -3.0),
        (3.5, 0, 4.0),  # not banker's rounding (round(3.5) == 4, round(2.5) == 2)
        (2.4999, 0, 2.0),
        (-0.4, 0, 0.0),
        (1.005, 2, 1.0),  # 1.005 is 1.00499999... in binary
        (1.2351, 2, 1.24),
        (-1.2351, 2, -1.24),
    ],
)
def test_round_half_away(value, decimals, expected):
    assert round_half_away(value, decimals) == expected


def test_round_half_away_never_returns_negative_zero():
    assert math.copysign(1.0, round_half_away(-0.001, 2)) == 1.0


# ---------------------------------------------------------------- search space


def test_decode_rounds_and_clips_into_the_space():
    space = SearchSpace(layer_min=2, layer_max=5, alpha_min=-1.0, alpha_max=1.0)
    setting = space.decode([1.6, 0.123456, 4.5, -3.0, 5.49, 0.995])
    assert setting.layers == (2, 5, 5)  # 1.6 -> 2; 4.5 -> 5 (half away); 5.49 -> 5
    assert setting.alphas == (0.12, -1.0, 1.0)  # clipped to the range; 0.995 -> 1.0
    assert isinstance(setting.layers[0], int)


def test_decode_of_the_bounds_stays_inside_the_layer_range():
    space = SearchSpace(layer_min=0, layer_max=3, alpha_min=-2, alpha_max=2)
    lower, upper = space.bounds(2)
    assert lower.tolist() == [-0.499, -2.0, -0.499, -2.0]
    assert upper.tolist() == [3.499, 2.0, 3.499, 2.0]
    assert space.decode(lower).layers == (0, 0)
    assert space.decode(upper).layers == (3, 3)


def test_every_layer_gets_an_equal_share_of_the_range():
    space = SearchSpace(layer_min=4, layer_max=7, alpha_min=-1, alpha_max=1)
    lower, upper = space.bounds(1)
    draws = np.random.default_rng(0).uniform(lower[0], upper[0], 40_000)
    layers = [space.layer(x) for x in draws]
    counts = np.bincount(layers)[4:]
    assert counts.tolist() and len(counts) == 4
    assert counts.min() / counts.max() > 0.95


def test_equal_settings_share_a_cache_key():
    space = SearchSpace(layer_min=0, layer_max=9, alpha_min=-5, alpha_max=5)
    a = space.decode([3.2, 1.2349])
    b = space.decode([2.8, 1.2251])
    assert a == b
    assert a.key == ((3,), (1.23,))
    assert space.decode(space.encode(a)) == a


def test_check_model_rejects_layers_outside_the_model():
    space = SearchSpace(layer_min=0, layer_max=4, alpha_min=-1, alpha_max=1)
    space.check_model(5)
    with pytest.raises(InvalidInputError, match="has layers 0 to 3"):
        space.check_model(4, "tiny")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"layer_min": -1}, "lowest layer must be 0 or more, got -1"),
        ({"layer_min": 5, "layer_max": 4}, "highest layer \\(4\\) is below the lowest \\(5\\)"),
        ({"layer_min": 1.5}, "lowest layer must be a whole number, got 1.5"),
        ({"alpha_min": 2, "alpha_max": 2}, "lowest alpha below the highest, got 2 to 2"),
        ({"alpha_max": 1000}, "highest alpha must be between -100 and 100, got 1000"),
        ({"alpha_min": "x"}, "lowest alpha must be a number, got 'x'"),
        ({"alpha_max": math.inf}, "finite"),
        ({"alpha_decimals": 9}, "between 0 and 6, got 9"),
    ],
)
def test_search_space_rejects_bad_bounds(kwargs, message):
    values = {"layer_min": 0, "layer_max": 4, "alpha_min": -1.0, "alpha_max": 1.0} | kwargs
    with pytest.raises(InvalidInputError, match=message):
        SearchSpace(**values)


# ---------------------------------------------------------------- configs


def test_configs_have_the_documented_defaults():
    fitness = FitnessConfig("steer_sentiment")
    assert (fitness.include_path, fitness.metric, fitness.limit) == (None, "acc", 400)
    assert (fitness.batch_size, fitness.num_fewshot) == (8, 0)
    pso = PsoConfig()
    assert (pso.particles, pso.iterations, pso.seed) == (6, 4, 0)
    assert pso.options == {"c1": 0.5, "c2": 0.3, "w": 0.9}
    assert pso.evaluations == 24


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"task": " "}, "Enter an lm-eval task name"),
        ({"include_path": "/no/such/folder"}, "Task folder not found: /no/such/folder"),
        ({"metric": ""}, "Enter a metric name"),
        ({"limit": 0}, "The document limit must be 1 or more, got 0"),
        ({"batch_size": 2.5}, "The batch size must be a whole number, got 2.5"),
        ({"num_fewshot": -1}, "few-shot examples must be 0 or more, got -1"),
    ],
)
def test_fitness_config_rejects_bad_values(kwargs, message):
    with pytest.raises(InvalidInputError, match=message):
        FitnessConfig(**({"task": "t"} | kwargs))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"particles": 0}, "number of particles must be 1 or more, got 0"),
        ({"iterations": True}, "number of iterations must be a whole number"),
        ({"c1": -0.1}, "c1 must be a finite number of 0 or more, got -0.1"),
        ({"w": math.nan}, "w must be a finite number"),
        ({"seed": 2**32}, "seed must be at most 4294967295"),
        ({"seed": -1}, "seed must be 0 or more"),
    ],
)
def test_pso_config_rejects_bad_values(kwargs, message):
    with pytest.raises(InvalidInputError, match=message):
        PsoConfig(**kwargs)


# ---------------------------------------------------------------- the loop


SPACE = SearchSpace(layer_min=0, layer_max=6, alpha_min=-4.0, alpha_max=4.0)
TARGET = np.array([4.0, 1.5])  # layer 4, alpha 1.5


def _sphere_score(setting: Setting) -> tuple[float, float]:
    """Higher is better; the best setting is layer 4, alpha 1.5."""
    point = np.array([setting.layers[0], setting.alphas[0]], dtype=float)
    return -float(sphere((point - TARGET)[None, :])[0]), 0.0


def _comparable(history):
    return [(e.iteration, e.particle, e.layers, e.alphas, e.score, e.cached) for e in history]


def test_swarm_search_finds_the_optimum_of_a_sphere():
    outcome = swarm_search(SPACE, 1, PsoConfig(particles=10, iterations=15, seed=3), _sphere_score)
    assert not outcome.cancelled
    assert len(outcome.history) == 150
    assert [(e.iteration, e.particle) for e in outcome.history[:11]] == [
        *((0, p) for p in range(10)),
        (1, 0),
    ]
    best = max(outcome.history, key=lambda e: e.score)
    assert best.layers == (4,)
    assert abs(best.alphas[0] - 1.5) < 0.3


def test_swarm_search_minimises_when_lower_is_better():
    def distance(setting):
        return -_sphere_score(setting)[0], 0.0

    outcome = swarm_search(
        SPACE, 1, PsoConfig(particles=10, iterations=15, seed=3), distance, higher_is_better=False
    )
    best = min(outcome.history, key=lambda e: e.score)
    assert best.layers == (4,) and abs(best.alphas[0] - 1.5) < 0.3


def test_same_seed_same_history_other_seed_other_history():
    pso = PsoConfig(particles=5, iterations=4, seed=11)
    first = swarm_search(
        SPACE, 2, pso, lambda s: _sphere_score(Setting(s.layers[:1], s.alphas[:1]))
    )
    second = swarm_search(
        SPACE, 2, pso, lambda s: _sphere_score(Setting(s.layers[:1], s.alphas[:1]))
    )
    other = swarm_search(
        SPACE,
        2,
        PsoConfig(particles=5, iterations=4, seed=12),
        lambda s: _sphere_score(Setting(s.layers[:1], s.alphas[:1])),
    )
    assert _comparable(first.history) == _comparable(second.history)
    assert _comparable(first.history) != _comparable(other.history)


def test_a_score_function_that_reseeds_global_rngs_cannot_steer_the_swarm():
    """lm-eval's simple_evaluate reseeds python, numpy and torch; inside the
    objective that would reset pyswarms' randomness. The loop isolates it."""
    pso = PsoConfig(particles=4, iterations=4, seed=5)

    def reseeding(setting):
        np.random.seed(0)
        random.seed(0)
        np.random.uniform(size=100)
        return _sphere_score(setting)

    clean = swarm_search(SPACE, 1, pso, _sphere_score)
    dirty = swarm_search(SPACE, 1, pso, reseeding)
    assert _comparable(clean.history) == _comparable(dirty.history)


def test_the_callers_global_random_state_is_left_alone():
    np.random.seed(123)
    random.seed(123)
    expected_np, expected_py = np.random.get_state()[1].copy(), random.getstate()
    swarm_search(SPACE, 1, PsoConfig(particles=3, iterations=2, seed=1), _sphere_score)
    assert np.array_equal(np.random.get_state()[1], expected_np)
    assert random.getstate() == expected_py


def test_each_rounded_setting_is_scored_once():
    space = SearchSpace(layer_min=1, layer_max=2, alpha_min=-0.1, alpha_max=0.1, alpha_decimals=1)
    calls = []

    def score(setting):
        calls.append(setting.key)
        return float(setting.layers[0]) + setting.alphas[0], 0.01

    outcome = swarm_search(space, 1, PsoConfig(particles=6, iterations=5, seed=0), score)
    assert len(outcome.history) == 30
    assert len(calls) == len(set(calls)) <= 6  # 2 layers x 3 alphas
    by_key = {}
    for e in outcome.history:
        key = (e.layers, e.alphas)
        assert e.cached == (key in by_key)
        if e.cached:
            assert (e.score, e.stderr) == by_key[key]
        by_key.setdefault(key, (e.score, e.stderr))
    assert sum(not e.cached for e in outcome.history) == len(calls)


def test_cancel_stops_before_the_next_evaluation():
    cancel = threading.Event()
    seen = []

    def on_evaluation(evaluation):
        seen.append(evaluation)
        if len(seen) == 7:
            cancel.set()

    outcome = swarm_search(
        SPACE,
        1,
        PsoConfig(particles=4, iterations=5, seed=0),
        _sphere_score,
        cancel=cancel,
        on_evaluation=on_evaluation,
    )
    assert outcome.cancelled
    assert outcome.history == seen and len(seen) == 7


def test_importing_and_running_pyswarms_leaves_logging_alone(tmp_path):
    """In a fresh process, where pyswarms is imported for the first time."""
    script = textwrap.dedent(
        """
        import logging, sys
        from optimize import PsoConfig, SearchSpace, swarm_search
        assert "pyswarms" not in sys.modules
        before = list(logging.getLogger().handlers), logging.getLogger().level
        space = SearchSpace(layer_min=0, layer_max=3, alpha_min=-1, alpha_max=1)
        swarm_search(space, 1, PsoConfig(particles=2, iterations=2), lambda s: (0.0, 0.0))
        assert "pyswarms" in sys.modules
        assert (list(logging.getLogger().handlers), logging.getLogger().level) == before
        print("ok")
        """
    )
    repo = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ, PYTHONPATH=repo)
    env.pop("LOG_CFG", None)
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
        check=False,
    )
    assert done.returncode == 0 and done.stdout == "ok\n", done.stderr
    assert list(tmp_path.iterdir()) == []  # no report.log


def test_pyswarms_leaves_logging_and_the_working_directory_alone(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    swarm_search(SPACE, 1, PsoConfig(particles=2, iterations=2), _sphere_score)
    assert root.handlers == handlers and root.level == level
    assert not (tmp_path / "report.log").exists()


# ---------------------------------------------------------------- the result file


def test_result_reports_gain_and_best_by_iteration():
    result = sample_result()
    assert result.gain_points == pytest.approx(12.0)
    assert result.best_by_iteration() == [0.62, 0.62]
    assert len(result.evaluations) == 4
    assert result.paid_evaluations == 4  # the baseline and three settings; one cached


def test_result_improved_only_when_a_confirmed_setting_beats_the_baseline():
    from optimize.guard.split import paired_test
    from optimize.guard.verdict import Confirmation, beats_baseline

    result = sample_result()
    assert not result.improved  # 0.62 vs 0.50 on the search documents, never confirmed
    history = result.history
    candidate = result.best
    passed = paired_test([0.0] * 13, [1.0] * 12 + [-1.0])
    confirmed = sample_result(
        confirm_planned=True,
        confirmation=Confirmation(13, "13", history[0], (candidate,), (passed,), 0.05),
    )
    assert confirmed.improved and confirmed.verdict.recommended.setting == candidate.setting
    ranking = result.ranking
    assert beats_baseline(ranking, candidate, history[0])  # 0.62 vs 0.50, alphas (0.5, 0.0)
    assert not beats_baseline(ranking, history[4], history[0])  # 0.40: below the baseline
    tie = dataclasses.replace(history[1], score=0.5)
    assert not beats_baseline(ranking, tie, history[0])  # level with the baseline
    zero = dataclasses.replace(history[2], alphas=(0.0, 0.0))
    assert not beats_baseline(ranking, zero, history[0])  # alpha 0 everywhere: the baseline
    lower = sample_result(best=history[4], higher_is_better=False).ranking
    assert beats_baseline(lower, history[4], history[0])  # a lower score is better for this metric


def test_result_round_trips_through_json(tmp_path):
    result = sample_result()
    path = result.save(tmp_path / "result.json")
    text = path.read_text()
    assert "NaN" not in text  # JSON has no NaN: a missing stderr is null
    loaded = OptimizationResult.load(path)
    assert loaded.to_dict() == result.to_dict()
    assert math.isnan(loaded.best.stderr)
    assert loaded.history[3].cached
    assert loaded.vectors[0].contrast_prompts == ("grief",)
    data = result.to_dict()
    assert data["gain_points"] == pytest.approx(12.0)
    assert data["history"][1] == {
        "iteration": 0,
        "particle": 0,
        "layers": [3, 5],
        "alphas": [1.25, -2.0],
        "score": 0.55,
        "stderr": 0.049,
        "seconds": 1.1,
        "cached": False,
        "metrics": {"target": 0.55, "target_stderr": 0.049},
    }


def test_held_out_scores_round_trip_and_old_files_still_load(tmp_path):
    result = sample_result()
    heldout = HeldOutScores(
        fitness=FitnessConfig("sentiment_heldout", limit=60),
        metric="acc,none",
        higher_is_better=True,
        samples=60,
        baseline=Evaluation(-1, -1, (), (), 0.55, 0.064, 2.0),
        best=dataclasses.replace(result.best, score=0.8, stderr=0.052, seconds=2.1),
    )
    with_heldout = dataclasses.replace(result, heldout=heldout)
    assert heldout.gain_points == pytest.approx(25.0)
    data = with_heldout.to_dict()
    assert data["heldout"]["task"] == "sentiment_heldout"
    assert data["heldout"]["gain_points"] == pytest.approx(25.0)
    assert data["heldout"]["best"]["layers"] == [4, 5]
    loaded = OptimizationResult.load(with_heldout.save(tmp_path / "heldout.json"))
    assert loaded.heldout == heldout
    assert loaded.to_dict() == data

    # a run without a held-out task, and a file written before held-out scores existed
    assert result.to_dict()["heldout"] is None
    old = result.to_dict()
    del old["heldout"]
    assert OptimizationResult.from_dict(old).heldout is None
    broken = result.to_dict() | {"heldout": {"task": "x"}}
    with pytest.raises(InvalidInputError, match="result is incomplete"):
        OptimizationResult.from_dict(broken)


def test_loading_something_else_fails_clearly(tmp_path):
    with pytest.raises(InvalidInputError, match="Result file not found"):
        OptimizationResult.load(tmp_path / "missing.json")
    (tmp_path / "other.json").write_text('{"format": "other"}')
    with pytest.raises(InvalidInputError, match="not a steerswarm optimization result"):
        OptimizationResult.load(tmp_path / "other.json")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(InvalidInputError, match="not a readable result file"):
        OptimizationResult.load(tmp_path / "broken.json")
