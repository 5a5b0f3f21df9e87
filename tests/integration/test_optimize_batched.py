"""One batched pass per swarm iteration: every setting's answers equal its own
separate evaluation, rows of different settings never leak into each other,
the layers below the lowest steered layer run once per input, memory sizes
how many settings share a pass, and the search's history does not change."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from optimize import LmEvalFitness, SearchSpace
from optimize.guard.objective import make_objective
from optimize.scoring import prefix
from optimize.scoring.batched import batched_evaluator
from optimize.search.loop import run_search
from steering.batched import row_limit, setting_deltas
from tests.support.models import fresh_steerer, joy_vector
from tests.support.recorded import SPHERE, history_rows, recorded_pso, sphere_score
from tests.support.tasks import choices_fitness


def _eight(steerer):
    """Eight settings: one, two or three vectors, low and high layers, a huge
    alpha next to small ones, a setting whose layers repeat another's."""
    n = steerer.info.num_layers
    return [
        [joy_vector(steerer, 1, 2.0)],
        [joy_vector(steerer, n - 1, -6.0)],
        [joy_vector(steerer, 0, 40.0)],
        [joy_vector(steerer, 2, 0.5), joy_vector(steerer, n - 1, 3.0)],
        [joy_vector(steerer, 1, -2.0)],
        [],
        [joy_vector(steerer, 3, 8.0), joy_vector(steerer, 3, -1.0)],
        [joy_vector(steerer, 1, 1.0), joy_vector(steerer, 2, 1.0), joy_vector(steerer, 0, -3.0)],
    ]


def _assert_close(batched, alone, tol=1e-4):
    assert len(batched) == len(alone)
    for (ll_b, greedy_b), (ll_a, greedy_a) in zip(batched, alone, strict=True):
        assert ll_b == pytest.approx(ll_a, abs=tol)
        assert greedy_b == greedy_a


@pytest.mark.parametrize("batch_size", [1, 8])
def test_each_setting_scores_as_its_own_evaluation(tiny, choices_task, monkeypatch, batch_size):
    monkeypatch.setattr(prefix, "MIN_BATCH_TOKENS", 0)  # the batch size, exactly
    steerer = fresh_steerer(tiny)
    fitness = LmEvalFitness(steerer, choices_fitness(choices_task, batch_size=batch_size))
    scorer = fitness.prefix_scorer
    assert scorer is not None and max(int(b.ids.shape[0]) for b in scorer.batches) == batch_size
    settings = _eight(steerer)
    together = scorer.score_many(steerer, [setting_deltas(s) for s in settings], row_limit(scorer))
    for vectors, answers in zip(settings, together, strict=True):
        alone = fitness.evaluate(vectors)
        _assert_close(answers, alone.responses)
    many = fitness.metrics_many(settings)
    assert [m.target for m in many] == [fitness.metrics(s).target for s in settings]
    assert steerer.vectors == () and steerer.steered_layers() == []


def test_one_setting_alone_in_the_batch_path(tiny, choices_task):
    steerer = fresh_steerer(tiny)
    fitness = LmEvalFitness(steerer, choices_fitness(choices_task))
    vectors = [joy_vector(steerer, 2, 5.0)]
    (answers,) = fitness.prefix_scorer.score_many(
        steerer, [setting_deltas(vectors)], row_limit(fitness.prefix_scorer)
    )
    _assert_close(answers, fitness.evaluate(vectors).responses)


def test_a_setting_does_not_change_what_its_neighbours_score(tiny, choices_task):
    """Settings 0 and 2 score the same whatever sits between them."""
    steerer = fresh_steerer(tiny)
    fitness = LmEvalFitness(steerer, choices_fitness(choices_task))
    scorer, limit = fitness.prefix_scorer, row_limit(fitness.prefix_scorer)
    a, c = [joy_vector(steerer, 1, 3.0)], [joy_vector(steerer, 2, -3.0)]
    runs = [
        scorer.score_many(steerer, [setting_deltas(s) for s in (a, middle, c)], limit)
        for middle in ([], [joy_vector(steerer, 0, 60.0)], [joy_vector(steerer, 3, -60.0)])
    ]
    for run in runs[1:]:
        _assert_close(run[0], runs[0][0], tol=1e-5)
        _assert_close(run[2], runs[0][2], tol=1e-5)
    assert runs[1][1] != runs[0][1]  # the middle setting itself did change


def test_the_layers_below_the_lowest_steering_run_once_per_input(tiny, choices_task):
    steerer = fresh_steerer(tiny)
    n = steerer.info.num_layers
    fitness = LmEvalFitness(steerer, choices_fitness(choices_task), cache_bytes=0)  # nothing stored
    scorer = fitness.prefix_scorer
    batches = len(scorer.batches)
    settings = [
        [joy_vector(steerer, 2, 1.0)], [joy_vector(steerer, 3, 1.0)], [joy_vector(steerer, 2, -1.0)]
    ]
    scorer.layer_runs = 0
    scorer.score_many(steerer, [setting_deltas(s) for s in settings], row_limit(scorer))
    # per batch: the unsteered state climbs layers 0-2 once (0-1, then 2 for the
    # layer-3 setting); the two layer-2 settings run layer 2 in one pass; all
    # three run layers 3..n-1 in one pass
    assert scorer.layer_runs == batches * (2 + 1 + 1 + (n - 3))
    scorer.layer_runs = 0
    for vectors in settings:
        fitness.evaluate(vectors)
    assert scorer.layer_runs == 3 * batches * n


def test_short_memory_falls_back_to_one_setting_per_pass(tiny, choices_task, monkeypatch):
    steerer = fresh_steerer(tiny)
    fitness = LmEvalFitness(steerer, choices_fitness(choices_task), batch_memory=1)
    scorer = fitness.prefix_scorer
    shapes = []
    applied = type(steerer).applied_deltas

    def spy(self, deltas):
        shapes.extend(int(d.shape[0]) for d in deltas.values())
        return applied(self, deltas)

    monkeypatch.setattr(type(steerer), "applied_deltas", spy)
    settings = _eight(steerer)[:3]
    low = fitness.metrics_many(settings)
    rows = {int(b.ids.shape[0]) for b in scorer.batches}
    assert shapes and set(shapes) <= rows  # one setting's rows per pass: sequential
    monkeypatch.setattr(type(steerer), "applied_deltas", applied)
    ample = LmEvalFitness(steerer, choices_fitness(choices_task), batch_memory=1 << 30)
    assert [m.target for m in ample.metrics_many(settings)] == [m.target for m in low]


def test_the_row_limit_comes_from_free_memory(tiny, choices_task, monkeypatch):
    from steering import batched

    steerer = fresh_steerer(tiny)
    scorer = LmEvalFitness(steerer, choices_fitness(choices_task)).prefix_scorer
    batch = scorer.batches[0].ids
    monkeypatch.setattr(batched, "free_memory_bytes", lambda device: 0)
    assert row_limit(scorer)(batch) == 1
    monkeypatch.setattr(batched, "free_memory_bytes", lambda device: 1 << 40)
    assert row_limit(scorer)(batch) > 1000


@pytest.mark.parametrize(
    "case", SPHERE["cases"], ids=lambda c: f"seed{c['seed']}-{c.get('space', 'space')}"
)
def test_a_batched_evaluator_keeps_the_recorded_pso_history(case):
    """The search loop's batch hook, given each iteration's settings at once,
    visits and records exactly what the one-by-one loop recorded."""

    space = SearchSpace(**SPHERE[case.get("space", "space")])
    pso = recorded_pso(case)
    nan_layer, higher = case["nan_layer"], case["higher_is_better"]
    batches = []

    def score_all(settings):
        batches.append(len(settings))
        scored = []
        for setting in settings:
            value, stderr = sphere_score(setting, nan_layer)
            scored.append(((value if higher else -value), stderr))
        return scored

    evaluate = batched_evaluator(score_all, lambda setting: setting)
    outcome = run_search(
        space, case["vectors"], pso, evaluate, make_objective("target", higher), strategy="pso"
    )
    assert history_rows(outcome.history) == case["history"]
    fresh = {row["iteration"] for row in case["history"] if not row["cached"]}
    assert len(batches) == len(fresh)  # once per iteration that had new settings
    assert sum(batches) == sum(not row["cached"] for row in case["history"])


def test_a_batched_evaluator_scores_nothing_before_it_is_read():
    seen = []
    evaluate = batched_evaluator(lambda settings: seen.extend(settings) or [], lambda s: s)
    results = evaluate(["a", "b"])
    assert seen == []
    assert list(results) == [] and seen == ["a", "b"]


def test_setting_deltas_sum_per_layer(tiny):
    steerer = fresh_steerer(tiny)
    a, b, c = joy_vector(steerer, 1, 2.0), joy_vector(steerer, 1, -0.5), joy_vector(steerer, 3, 1.0)
    deltas = setting_deltas([a, b, c])
    assert sorted(deltas) == [1, 3]
    torch.testing.assert_close(deltas[1], 2.0 * a.direction - 0.5 * b.direction)
    torch.testing.assert_close(deltas[3], c.direction)
    assert not math.isnan(float(deltas[1].sum()))


@pytest.mark.full  # eight SmolLM2 evaluations per batch size: minutes
@pytest.mark.parametrize("batch_size", [1, 8])
def test_smollm2_settings_batched_equal_their_own_evaluations(smol, monkeypatch, batch_size):
    """SmolLM2 on a shipped task: eight settings of the sentiment concept in
    one batched pass give each setting's own log-likelihoods within 1e-4."""
    from optimize import FitnessConfig
    from presets import load_preset
    from steering import capture_vector, steerer_for

    monkeypatch.setattr(prefix, "MIN_BATCH_TOKENS", 0)
    preset = load_preset("sentiment")
    steerer = steerer_for(smol.model, smol.tokenizer, smol.name)
    tasks = str(Path(__file__).resolve().parents[2] / "tasks")
    config = FitnessConfig("steer_sentiment", include_path=tasks, limit=6, batch_size=batch_size)
    fitness = LmEvalFitness(steerer, config)
    vector = capture_vector(steerer, preset.concept, 4, 1.0, preset.contrast)
    settings = [
        [capture_vector(steerer, preset.concept, layer, alpha, preset.contrast)]
        for layer, alpha in ((4, 1.0), (12, -2.5), (7, 3.0), (20, 6.0), (2, -1.0), (15, 0.5))
    ] + [[], [vector, vector.with_alpha(-2.0)]]
    scorer = fitness.prefix_scorer
    together = scorer.score_many(steerer, [setting_deltas(s) for s in settings], row_limit(scorer))
    for vectors, answers in zip(settings, together, strict=True):
        _assert_close(answers, fitness.evaluate(vectors).responses)


def test_the_guarded_fitness_scores_an_iteration_as_each_setting_alone(tiny, choices_task):
    from optimize.guard.kl import GuardedFitness, KlGuard

    steerer = fresh_steerer(tiny)
    texts = ["the river ran past the old mill", "we had tea at noon", "a quiet morning in town"]
    guarded = GuardedFitness(
        LmEvalFitness(steerer, choices_fitness(choices_task)), KlGuard(steerer, texts)
    )
    settings = _eight(steerer)[:4] + [[]]
    together = guarded.metrics_many(settings)
    for vectors, metrics in zip(settings, together, strict=True):
        alone = guarded.metrics(vectors)
        assert metrics.target == alone.target
        assert metrics["kl"] == pytest.approx(alone["kl"], rel=1e-4, abs=1e-6)
    assert together[-1]["kl"] == 0.0 and together[0]["kl"] > 0.0
