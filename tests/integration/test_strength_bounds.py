"""Search bounds in strength units: one range for every layer and
vector, turned into each vector's alpha at the setting's layer."""

from __future__ import annotations

import argparse

import pytest

from optimize import FitnessConfig, PsoConfig, SearchSpace, run_optimization
from optimize.config.space import Setting
from optimize.config.table import BY_NAME, add_arguments
from optimize.run.optimization import RunPlan
from optimize.scoring.metrics import Metrics
from steering import capture_vector, recapture, steerer_for
from steering.errors import InvalidInputError

CONCEPT = ["I am so happy today", "What a wonderful gift", "We laughed all day"]
CONTRAST = ["I am so sad today", "What a terrible loss", "We cried all day"]


def test_a_strength_space_searches_its_strength_range():
    space = SearchSpace(2, 5, unit="strength", strength_min=-0.25, strength_max=0.5)
    lower, upper = space.bounds(2)
    assert list(lower[1::2]) == [-0.25, -0.25] and list(upper[1::2]) == [0.5, 0.5]
    setting = space.decode([3.2, 0.12345, 4.9, 9.0])
    assert setting == Setting((3, 5), (0.123, 0.5))  # 3 decimals, clamped to the range
    assert space.describe() == "strength -0.25 to 0.5"
    # alpha = strength x (layer norm / |V| there), rounded to alpha_decimals
    scales = {(0, 3): 10.0, (1, 5): 4.0}
    converted = space.to_alphas(setting, lambda i, layer: scales[(i, layer)])
    assert converted == Setting((3, 5), (1.23, 2.0))


def test_an_alpha_space_is_unchanged_by_the_conversion():
    space = SearchSpace(0, 3, -2.0, 2.0)
    assert space.unit == "alpha" and space.describe() == "alpha -2 to 2"
    setting = space.decode([1.0, 1.234])
    assert space.to_alphas(setting, lambda i, layer: 1e6) is setting


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"unit": "volts"}, "The unit must be one of strength, alpha"),
        ({"unit": "strength", "strength_min": 0.3, "strength_max": 0.3}, "lowest strength below"),
        ({"unit": "strength", "strength_max": 9.0}, "highest strength must be between"),
    ],
)
def test_bad_strength_bounds_are_refused(kwargs, message):
    with pytest.raises(InvalidInputError, match=message):
        SearchSpace(0, 3, **kwargs)


def test_the_cli_and_table_default_to_strength_and_keep_alpha_flags():
    from optimize.run.settings import RunSettings

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    given = vars(parser.parse_args(["--task", "t"]))
    space = RunSettings.from_values(given).space(30)
    assert (space.unit, space.strength_min, space.strength_max) == ("strength", -0.2, 0.2)
    assert (space.alpha_min, space.alpha_max) == (-4.0, 4.0)
    args = parser.parse_args(
        ["--task", "t", "--unit", "alpha", "--alpha-min", "-1", "--alpha-max", "2"]
    )
    assert (args.unit, args.alpha_min, args.alpha_max) == ("alpha", -1.0, 2.0)
    with pytest.raises(SystemExit):
        parser.parse_args(["--task", "t", "--unit", "volts"])
    assert BY_NAME["unit"].check(" alpha ") == "alpha"


class _Recorder:
    """A model-free fitness that keeps the vectors each setting was scored with."""

    config = FitnessConfig(task="recorded")
    samples = 1
    higher_is_better = True
    metric_key = "score"

    def __init__(self) -> None:
        self.seen: list = []

    def metrics(self, vectors):
        self.seen.append(tuple(vectors))
        return Metrics.of_target(sum(v.alpha for v in vectors))


def test_a_strength_search_scores_alphas_that_give_strengths_in_range(tiny):
    steerer = steerer_for(tiny.model, tiny.tokenizer, tiny.name)
    steerer.reset()
    steerer.add(capture_vector(steerer, CONCEPT, 1, 1.0, CONTRAST))
    fitness = _Recorder()
    space = SearchSpace(0, 3, unit="strength", strength_min=0.1, strength_max=0.3)
    result = run_optimization(
        steerer, [0], RunPlan(fitness, space, PsoConfig(particles=3, iterations=2, seed=0))
    )
    steered = [vectors[0] for vectors in fitness.seen[1:]]
    assert steered and {v.layer for v in steered} <= {0, 1, 2, 3}
    for vector in steered:
        # a recaptured vector knows its layer norm: its strength is in the range
        # (within the rounding of alpha to 2 decimals)
        slack = 0.005 * vector.norm / vector.layer_norm
        assert 0.1 - slack <= vector.strength <= 0.3 + slack
    # what is recorded and applied are real alphas, not strengths
    for evaluation in result.history[1:]:
        layer, alpha = evaluation.setting.layers[0], evaluation.setting.alphas[0]
        moved = recapture(steerer, steerer.vectors[0], layer).with_alpha(alpha)
        assert 0.1 - 0.01 <= moved.strength <= 0.3 + 0.01
    assert result.space.unit == "strength"
