"""Optuna's TPE and CMA-ES behind the strategy registry: seeded, a batch of
`particles` trials per iteration, whole layers and rounded alphas on the same
settings and cache as PSO, unscorable settings survived, and a clear message
when Optuna is not installed."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

from optimize import LmEvalFitness, PsoConfig, SearchSpace, run_optimization, swarm_search
from optimize.run.optimization import RunPlan
from optimize.run.settings import RunSettings
from optimize.search.strategies import STRATEGIES, make_strategy
from steering.errors import InvalidInputError
from tests.support.tasks import sentiment_fitness

OPTUNA = ("tpe", "cmaes")
SPACE = SearchSpace(layer_min=1, layer_max=15, alpha_min=-3.0, alpha_max=3.0, alpha_decimals=2)


def _bowl(setting):
    """Higher is better; the best setting is layers (7, 3), alphas (1.05, -2)."""
    targets = ((7, 1.05), (3, -2.0))
    distance = sum(
        (layer - t) ** 2 + (alpha - u) ** 2
        # one vector or two: a one-vector setting is scored against the first target
        for layer, alpha, (t, u) in zip(setting.layers, setting.alphas, targets, strict=False)
    )
    return -distance, 0.0


def _visits(outcome):
    return [(e.iteration, e.particle, e.layers, e.alphas, e.cached) for e in outcome.history]


def test_pso_stays_the_default_and_the_samplers_are_registered():
    assert {"pso", "tpe", "cmaes"} <= set(STRATEGIES)
    from optimize.run.optimization import RunPlan

    assert RunPlan.__dataclass_fields__["strategy"].default == "pso"
    assert RunSettings.from_values({"task": "t"}).strategy == "pso"


@pytest.mark.parametrize("name", OPTUNA)
def test_a_seed_repeats_its_history_and_another_seed_does_not(name):
    def run(seed):
        pso = PsoConfig(particles=4, iterations=3, seed=seed)
        return swarm_search(SPACE, 2, pso, _bowl, strategy=name)

    first, again, other = run(5), run(5), run(6)
    assert _visits(first) == _visits(again)
    assert [e.score for e in first.history] == [e.score for e in again.history]
    assert _visits(first) != _visits(other)
    assert len(first.history) == 12  # particles x iterations, as a swarm


@pytest.mark.parametrize("name", OPTUNA)
def test_positions_are_whole_layers_and_alphas_inside_the_space(name):
    bounds = SPACE.bounds(2)
    strategy = make_strategy(name, bounds, PsoConfig(particles=6, iterations=4, seed=1))
    seen_layers = set()
    for _ in range(4):
        rows = strategy.ask()
        assert rows.shape == (6, 4)
        layers, alphas = rows[:, 0::2], rows[:, 1::2]
        assert np.array_equal(layers, np.round(layers))
        assert layers.min() >= SPACE.layer_min and layers.max() <= SPACE.layer_max
        assert alphas.min() >= SPACE.alpha_min and alphas.max() <= SPACE.alpha_max
        seen_layers |= set(layers.ravel().tolist())
        for row in rows:  # what the loop scores: the same rounded setting PSO would get
            setting = SPACE.decode(row)
            assert list(setting.layers) == [int(v) for v in row[0::2]]
        strategy.tell(np.array([-_bowl(SPACE.decode(r))[0] for r in rows]))
    assert len(seen_layers) > 3


@pytest.mark.parametrize("name", OPTUNA)
def test_a_coarse_space_hits_the_shared_cache(name):
    coarse = SearchSpace(layer_min=1, layer_max=2, alpha_min=-1.0, alpha_max=1.0, alpha_decimals=0)
    paid = []

    def score(setting):
        paid.append(setting.key)
        return _bowl(setting)

    outcome = swarm_search(
        coarse, 1, PsoConfig(particles=4, iterations=4, seed=0), score, strategy=name
    )
    assert len(paid) == len(set(paid)) <= 6  # 2 layers x 3 rounded alphas, each scored once
    assert sum(e.cached for e in outcome.history) == 16 - len(paid)


@pytest.mark.parametrize("name", OPTUNA)
def test_unscorable_settings_do_not_stop_the_search(name):
    def score(setting):
        return (math.nan, math.nan) if setting.layers[0] % 2 else _bowl(setting)

    outcome = swarm_search(
        SPACE, 1, PsoConfig(particles=4, iterations=4, seed=3), score, strategy=name
    )
    assert len(outcome.history) == 16
    assert any(math.isnan(e.score) for e in outcome.history)
    assert any(not math.isnan(e.score) for e in outcome.history)


@pytest.mark.parametrize("name", OPTUNA)
def test_the_samplers_close_in_on_a_bowl(name):
    """Seeded, so deterministic: the best of 8 batches of 6 beats the best of
    the first (random) batch."""
    outcome = swarm_search(
        SPACE, 1, PsoConfig(particles=6, iterations=8, seed=0), _bowl, strategy=name
    )
    first = max(e.score for e in outcome.history if e.iteration == 0)
    assert max(e.score for e in outcome.history) > first


@pytest.mark.parametrize("name", OPTUNA)
def test_a_missing_optuna_says_what_to_install(name, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna -> ImportError
    with pytest.raises(InvalidInputError, match=r"pip install optuna==5\.0\.0"):
        make_strategy(name, SPACE.bounds(1), PsoConfig())


def test_a_run_on_the_tiny_llama_with_tpe(steerer, sentiment_task):
    space = SearchSpace(layer_min=0, layer_max=3, alpha_min=-30.0, alpha_max=30.0)
    result = run_optimization(
        steerer,
        [0],
        RunPlan(
            LmEvalFitness(steerer, sentiment_fitness(sentiment_task)),
            space,
            PsoConfig(particles=3, iterations=2, seed=4),
            strategy="tpe",
        ),
    )
    assert result.strategy == "tpe" and len(result.evaluations) == 6
    assert all(0 <= e.layers[0] <= 3 for e in result.evaluations)


def test_an_unknown_strategy_names_the_known_ones():
    from optimize.search.strategies import strategy_class

    with pytest.raises(InvalidInputError, match="known strategies: cmaes, pso, tpe"):
        strategy_class("annealing")


def test_the_command_line_offers_the_strategies():
    from optimize.cli import _parser as build_parser

    args = build_parser().parse_args(["--vectors", "v", "--task", "t", "--out", "o"])
    assert not hasattr(args, "strategy")  # not given: the table's default, pso
    assert "(default: pso)" in build_parser().format_help()
    assert build_parser().parse_args(
        ["--vectors", "v", "--task", "t", "--out", "o", "--strategy", "tpe"]
    ).strategy == "tpe"
