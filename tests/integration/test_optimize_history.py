"""The ask/tell search loop reproduces, exactly, the histories the pyswarms
loop gave before the redesign (tests/data/pso_history.json, recorded with
`GlobalBestPSO.optimize`): same seed, same positions, scores, cache hits."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from optimize import LmEvalFitness, PsoConfig, SearchSpace, run_optimization, swarm_search
from tests.support.tasks import sentiment_fitness

RECORDED = json.loads((Path(__file__).parents[1] / "data" / "pso_history.json").read_text())
SPHERE = RECORDED["sphere"]


def _rows(history):
    return [
        {
            "iteration": e.iteration,
            "particle": e.particle,
            "layers": list(e.layers),
            "alphas": list(e.alphas),
            "score": None if math.isnan(e.score) else e.score,
            "stderr": None if math.isnan(e.stderr) else e.stderr,
            "cached": e.cached,
        }
        for e in history
    ]


def _sphere(setting, nan_layer):
    """Higher is better; the recorded score function, unchanged."""
    if nan_layer is not None and setting.layers[0] == nan_layer:
        return math.nan, math.nan
    distance = sum(
        (layer - t) ** 2 + (alpha - u) ** 2
        for layer, alpha, (t, u) in zip(setting.layers, setting.alphas, SPHERE["targets"])
    )
    return -distance, 0.001 * sum(setting.layers)


@pytest.mark.parametrize(
    "case", SPHERE["cases"], ids=lambda c: f"seed{c['seed']}-{c.get('space', 'space')}"
)
def test_the_swarm_repeats_the_recorded_model_free_history(case):
    space = SearchSpace(**SPHERE[case.get("space", "space")])
    pso = PsoConfig(particles=case["particles"], iterations=case["iterations"], seed=case["seed"])
    nan_layer, higher = case["nan_layer"], case["higher_is_better"]

    def score(setting):
        value, stderr = _sphere(setting, nan_layer)
        return (value if higher else -value), stderr

    outcome = swarm_search(space, case["vectors"], pso, score, higher_is_better=higher)
    assert _rows(outcome.history) == case["history"]


def test_the_recorded_histories_cover_nan_scores_and_cache_hits():
    rows = [row for case in SPHERE["cases"] for row in case["history"]]
    assert any(row["score"] is None for row in rows) and any(row["cached"] for row in rows)


@pytest.mark.parametrize("run", RECORDED["tiny_llama"]["runs"], ids=lambda r: f"seed{r['seed']}")
def test_a_run_on_the_tiny_llama_repeats_the_recorded_history(steerer, sentiment_task, run):
    recorded = RECORDED["tiny_llama"]
    config = sentiment_fitness(sentiment_task, limit=recorded["fitness"]["limit"])
    result = run_optimization(
        steerer,
        run["vector_indices"],
        LmEvalFitness(steerer, config),
        SearchSpace(**recorded["space"]),
        PsoConfig(particles=run["particles"], iterations=run["iterations"], seed=run["seed"]),
    )
    assert _rows(result.history) == run["history"]
    assert _rows([result.best]) == [run["best"]]
