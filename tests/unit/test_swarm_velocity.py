"""The swarm's velocities, in proportion to each range.

pyswarms starts every velocity from [0, 1) in every dimension when it is
given no clamp, whatever the dimension's range. In the default strength
range (-0.2..0.2, 0.4 wide) that is up to 2.5 times the range, and always
upward: one step carried nearly every particle to the top bound, where the
nearest-bound rule held it, so the default swarm spent its later iterations
on settings at strength 0.2. `PsoConfig.velocity_limit` gives pyswarms a
clamp of that share of each range instead: velocities start either way and
stay in proportion."""

from __future__ import annotations

import numpy as np
import pytest

from optimize import PsoConfig, SearchSpace, swarm_search
from optimize.search.strategies.pso import PsoStrategy
from steering.errors import InvalidInputError

# The default search space of a run on a 30-layer model.
SPACE = SearchSpace(layer_min=3, layer_max=18, unit="strength")


def _flat(setting):
    """Every setting scores the same: where the swarm goes is its own doing."""
    return 0.5, 0.0


def _strengths(limit, seed=0):
    pso = PsoConfig(particles=6, iterations=4, seed=seed, velocity_limit=limit)
    outcome = swarm_search(SPACE, 1, pso, _flat)
    return [(e.iteration, e.alphas[0]) for e in outcome.history]


def test_the_default_limit_is_a_quarter_of_each_range():
    assert PsoConfig().velocity_limit == 0.25


def _later(limit):
    """The strengths visited after the first iteration, over seeds 0-4."""
    return [s for seed in range(5) for iteration, s in _strengths(limit, seed) if iteration > 0]


def test_pyswarms_own_start_piles_the_swarm_on_the_top_strength():
    """The behaviour the limit replaces, kept as a fact about pyswarms
    (80 of 90 later settings at the bound when this was written)."""
    later = _later(0.0)
    assert sum(s == SPACE.strength_max for s in later) >= 0.8 * len(later)


def test_with_the_default_limit_the_swarm_keeps_its_spread():
    later = _later(PsoConfig().velocity_limit)  # 8 of 90 at the bound when written
    assert sum(s == SPACE.strength_max for s in later) <= 0.2 * len(later)
    assert sum(s < 0 for s in later) >= 0.25 * len(later)  # both ways


def test_velocities_start_either_way_and_stay_within_the_limit():
    lower, upper = SPACE.bounds(1)
    width = upper - lower
    np.random.seed(0)
    config = PsoConfig(particles=50, iterations=3, velocity_limit=0.1)
    strategy = PsoStrategy((lower, upper), config)
    swarm = strategy._optimizer.swarm
    assert (np.abs(swarm.velocity) <= 0.1 * width + 1e-12).all()
    assert (swarm.velocity < 0).any(axis=0).all() and (swarm.velocity > 0).any(axis=0).all()
    for _ in range(3):
        strategy.tell(np.random.random_sample(50))
        assert (np.abs(strategy._optimizer.swarm.velocity) <= 0.1 * width + 1e-12).all()
        position = strategy.ask()
        assert ((position >= lower) & (position <= upper)).all()


@pytest.mark.parametrize("value", [-0.1, 1.5, float("nan"), "fast"])
def test_a_velocity_limit_outside_0_to_1_is_refused(value):
    with pytest.raises(InvalidInputError, match="velocity limit"):
        PsoConfig(velocity_limit=value)


def test_the_ask_tell_loop_visits_what_pyswarms_own_loop_visits_with_the_limit():
    """pyswarms' `GlobalBestPSO.optimize` with the same clamp and seed is the
    oracle: the step-by-step strategy applies the limit exactly as it does."""
    from optimize.search.strategies._pyswarms import global_best_pso

    lower, upper = SPACE.bounds(1)
    config = PsoConfig(particles=6, iterations=4, seed=3)

    def cost(positions):
        return (positions[:, 0] - 7.0) ** 2 + 100 * (positions[:, 1] - 0.1) ** 2

    seen = []

    def recorded_cost(positions):
        seen.append(positions.copy())
        return cost(positions)

    np.random.seed(config.seed)
    pyswarms_loop = global_best_pso(
        config.particles, 2, config.options, (lower, upper), config.velocity_limit
    )
    pyswarms_loop.optimize(recorded_cost, config.iterations, verbose=False)

    np.random.seed(config.seed)
    strategy = PsoStrategy((lower, upper), config)
    asked = []
    for _ in range(config.iterations):
        asked.append(strategy.ask())
        strategy.tell(cost(asked[-1]))
    assert len(seen) == len(asked) == config.iterations
    for theirs, ours in zip(seen, asked, strict=True):
        np.testing.assert_array_equal(theirs, ours)
