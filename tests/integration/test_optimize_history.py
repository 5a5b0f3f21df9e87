"""The ask/tell search loop reproduces, exactly, the histories the pyswarms
loop gave before the redesign (tests/data/pso_history.json, recorded with
`GlobalBestPSO.optimize`): same seed, same positions, scores, cache hits,
with the velocities pyswarms starts from when it is given no limit (the
recording's; `PsoConfig.velocity_limit` 0)."""

from __future__ import annotations

import pytest

from optimize import LmEvalFitness, SearchSpace, run_optimization, swarm_search
from optimize.run.optimization import RunPlan
from tests.support.recorded import RECORDED, SPHERE, history_rows, recorded_pso, sphere_score
from tests.support.tasks import sentiment_fitness


@pytest.mark.parametrize(
    "case", SPHERE["cases"], ids=lambda c: f"seed{c['seed']}-{c.get('space', 'space')}"
)
def test_the_swarm_repeats_the_recorded_model_free_history(case):
    space = SearchSpace(**SPHERE[case.get("space", "space")])
    pso = recorded_pso(case)
    nan_layer, higher = case["nan_layer"], case["higher_is_better"]

    def score(setting):
        value, stderr = sphere_score(setting, nan_layer)
        return (value if higher else -value), stderr

    outcome = swarm_search(space, case["vectors"], pso, score, higher_is_better=higher)
    assert history_rows(outcome.history) == case["history"]


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
        RunPlan(
            LmEvalFitness(steerer, config),
            SearchSpace(**recorded["space"]),
            recorded_pso(run),
        ),
    )
    assert history_rows(result.history) == run["history"]
    assert history_rows([result.best]) == [run["best"]]
