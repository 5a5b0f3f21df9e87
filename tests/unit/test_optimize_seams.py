"""The optimizer's seams: a toy search strategy and a toy objective, each one
class in this file plus one registry line; the batch evaluator hook; named
metrics end to end; result files of version 1 still load."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest

from optimize import (
    OBJECTIVES,
    STRATEGIES,
    Evaluation,
    Metrics,
    Objective,
    OptimizationResult,
    PsoConfig,
    SearchSpace,
    Strategy,
    make_objective,
    run_search,
    swarm_search,
)
from steering.errors import InvalidInputError
from tests.support.results import sample_result

SPACE = SearchSpace(layer_min=0, layer_max=6, alpha_min=-4.0, alpha_max=4.0)


def _distance(setting):
    return (setting.layers[0] - 4) ** 2 + (setting.alphas[0] - 1.5) ** 2


class RandomSearch(Strategy):
    """Uniform random positions, seeded by the run's seed; learns nothing."""

    name = "random"

    def __init__(self, bounds, config):
        super().__init__(bounds, config)
        self.rng = np.random.default_rng(config.seed)
        self.told = []

    def ask(self):
        low, high = self.bounds
        return self.rng.uniform(low, high, size=(self.config.particles, len(low)))

    def tell(self, costs):
        self.told.append(np.asarray(costs).copy())


def test_a_toy_strategy_needs_one_class_and_a_registry_line(monkeypatch):
    monkeypatch.setitem(STRATEGIES, RandomSearch.name, RandomSearch)  # the registry line
    pso = PsoConfig(particles=5, iterations=4, seed=3)

    def score(setting):
        return -_distance(setting), 0.0

    first = swarm_search(SPACE, 1, pso, score, strategy="random")
    again = swarm_search(SPACE, 1, pso, score, strategy="random")
    default = swarm_search(SPACE, 1, pso, score)
    assert len(first.history) == 20 and not first.cancelled
    assert [(e.iteration, e.particle) for e in first.history[:6]] == [
        *((0, p) for p in range(5)),
        (1, 0),
    ]
    assert [e.setting for e in first.history] == [e.setting for e in again.history]
    assert [e.setting for e in first.history] != [e.setting for e in default.history]
    assert all(0 <= e.layers[0] <= 6 and -4 <= e.alphas[0] <= 4 for e in first.history)


def test_an_unknown_strategy_or_objective_is_refused():
    with pytest.raises(InvalidInputError, match=r"Unknown search strategy 'nope'; known .*pso"):
        swarm_search(SPACE, 1, PsoConfig(), lambda s: (0.0, 0.0), strategy="nope")
    with pytest.raises(
        InvalidInputError, match=r"Unknown objective 'nope'; known objectives: .*target"
    ):
        make_objective("nope")


class Closeness(Objective):
    """Ranks by a named metric other than the target: closeness to a point."""

    name = "closeness"

    def value(self, metrics):
        return -metrics["distance"]


def test_a_toy_objective_ranks_by_another_metric(monkeypatch):
    monkeypatch.setitem(OBJECTIVES, Closeness.name, Closeness)  # the registry line

    def score(setting):
        # the target rewards being far away; the objective ignores it
        return Metrics(target=_distance(setting), target_stderr=0.0, distance=_distance(setting))

    pso = PsoConfig(particles=8, iterations=10, seed=1)
    outcome = swarm_search(SPACE, 1, pso, score, objective="closeness")
    best = make_objective("closeness").best(outcome.history)
    assert best.layers == (4,) and abs(best.alphas[0] - 1.5) < 0.5
    assert best.metrics["distance"] == min(e.metrics["distance"] for e in outcome.history)
    assert best.score == best.metrics["distance"]  # the target is recorded, not ranked by


def test_the_nan_rule_and_ties_live_in_the_objective():
    higher, lower = make_objective("target", True), make_objective("target", False)
    nan, one, two = (Metrics.of_target(v) for v in (math.nan, 1.0, 2.0))
    assert higher.better(two, one) and not higher.better(one, two)
    assert lower.better(one, two) and not lower.better(two, one)
    for ranking in (higher, lower):
        assert ranking.better(one, nan) and not ranking.better(nan, one)
        assert not ranking.better(nan, nan) and ranking.better(nan, None)
        assert not ranking.better(one, Metrics.of_target(1.0))  # a tie keeps the earlier
        assert ranking.cost(nan) == math.inf
    history = [
        Evaluation.scored(0, p, SPACE.decode([p, 0.0]), m, 0.0)
        for p, m in enumerate((nan, one, two, Metrics.of_target(2.0)))
    ]
    assert higher.best(history) is history[2]
    assert [e.particle for e in higher.running_best(history)] == [0, 1, 2, 2]
    assert [e.particle for e in lower.running_best(history)] == [0, 1, 1, 1]


def test_the_batch_hook_gets_each_iterations_new_settings_once():
    space = SearchSpace(layer_min=1, layer_max=2, alpha_min=-0.1, alpha_max=0.1, alpha_decimals=1)
    batches = []

    def evaluate(settings):
        batches.append(list(settings))
        return [Metrics(target=s.layers[0] + s.alphas[0], extra=1.0) for s in settings]

    pso = PsoConfig(particles=6, iterations=5, seed=0)
    outcome = run_search(space, 1, pso, evaluate, make_objective("target"))
    batched = [s for batch in batches for s in batch]
    assert len(batches) == 5 and len(batched) == len({s.key for s in batched})
    assert sum(not e.cached for e in outcome.history) == len(batched)
    assert all(e.metrics["extra"] == 1.0 for e in outcome.history)
    # the same search scored one by one visits the same settings
    one_by_one = swarm_search(space, 1, pso, lambda s: (s.layers[0] + s.alphas[0], math.nan))
    assert [e.setting for e in one_by_one.history] == [e.setting for e in outcome.history]


def test_a_cancel_stops_a_batch_between_two_settings():
    cancel = threading.Event()
    seen = []

    def on_evaluation(evaluation):
        seen.append(evaluation)
        if len(seen) == 2:
            cancel.set()

    outcome = swarm_search(
        SPACE,
        1,
        PsoConfig(particles=4, iterations=2),
        lambda s: (0.0, 0.0),
        cancel=cancel,
        on_evaluation=on_evaluation,
    )
    assert outcome.cancelled and outcome.history == seen and len(seen) == 2


def test_every_metric_is_saved_and_a_version_1_file_still_loads(tmp_path):
    result = sample_result()
    extra = Evaluation.scored(
        2,
        0,
        SPACE.decode([4.0, 1.0, 5.0, 0.0]),
        Metrics(target=0.7, target_stderr=0.01, kl=0.3),
        1.0,
    )
    result = type(result)(**{**vars(result), "history": [*result.history, extra]})
    loaded = OptimizationResult.load(result.save(tmp_path / "v2.json"))
    assert loaded.history[-1].metrics == Metrics(target=0.7, target_stderr=0.01, kl=0.3)
    assert (loaded.objective, loaded.strategy) == ("target", "pso")

    old = result.to_dict() | {"version": 1}
    for key in ("objective", "strategy"):
        del old[key]
    for evaluation in [old["baseline"], old["best"], *old["history"]]:
        del evaluation["metrics"]
    v1 = OptimizationResult.from_dict(old)
    assert v1.history[-1].metrics == Metrics(target=0.7, target_stderr=0.01)
    assert [e.score for e in v1.history] == [e.score for e in result.history]
    assert (v1.objective, v1.strategy) == ("target", "pso")
    with pytest.raises(InvalidInputError, match="version 99; this steerswarm reads versions 1, 2"):
        OptimizationResult.from_dict(old | {"version": 99})


def test_metrics_are_a_frozen_validated_mapping():
    metrics = Metrics(target=0.5, kl=1)
    assert dict(metrics) == {"target": 0.5, "kl": 1.0} and math.isnan(metrics.target_stderr)
    assert metrics == Metrics({"kl": 1.0, "target": 0.5}) and hash(metrics) == hash(
        Metrics(kl=1.0, target=0.5)
    )
    with pytest.raises(TypeError):
        metrics["kl"] = 2.0  # type: ignore[index]
    with pytest.raises(ValueError, match="must be a number"):
        Metrics(kl="high")


def test_known_scores_let_a_cancelled_search_resume_where_it_stopped():
    pso = PsoConfig(particles=4, iterations=3, seed=5)
    ranking = make_objective("target")
    calls = []

    def evaluate(settings):
        for setting in settings:
            calls.append(setting.key)
            yield Metrics.of_target(-_distance(setting), 0.0)

    whole = run_search(SPACE, 1, pso, evaluate, ranking)
    cancel = threading.Event()

    def stop_after_five(evaluation):
        if evaluation.iteration * 4 + evaluation.particle == 4:
            cancel.set()

    part = run_search(
        SPACE, 1, pso, evaluate, ranking, cancel=cancel, on_evaluation=stop_after_five
    )
    assert part.cancelled and len(part.history) == 5
    journal = {e.setting.key: e.metrics for e in part.history}
    calls.clear()
    resumed = run_search(SPACE, 1, pso, evaluate, ranking, known=journal)
    assert [(e.setting, e.score) for e in resumed.history] == [
        (e.setting, e.score) for e in whole.history
    ]
    assert not set(calls) & set(journal)  # nothing scored twice
    assert all(e.cached for e in resumed.history[:5])
