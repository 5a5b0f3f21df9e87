"""pyswarms' GlobalBestPSO, one iteration per ask/tell.

`GlobalBestPSO.optimize` owns its loop (and `optimize(iters=1)` called again
resets the personal bests), so this drives the same backend operators step by
step, in the order `optimize` runs them: score the positions, update personal
and global bests, update the options, then velocities and positions. With the
same seed it visits exactly the positions `optimize` visits.
"""

from __future__ import annotations

import numpy as np

from optimize.config.configs import PsoConfig
from optimize.search.strategies._pyswarms import global_best_pso, import_pyswarms
from optimize.search.strategies.base import Strategy


class PsoStrategy(Strategy):
    """Particle swarm (pyswarms GlobalBestPSO, particles stop at the bounds,
    velocities within `PsoConfig.velocity_limit` of each range)."""

    name = "pso"

    def __init__(self, bounds: tuple[np.ndarray, np.ndarray], config: PsoConfig) -> None:
        super().__init__(bounds, config)
        self._compute_pbest = import_pyswarms("pyswarms.backend.operators").compute_pbest
        optimizer = global_best_pso(
            config.particles, len(bounds[0]), config.options, bounds, config.velocity_limit
        )
        # What optimize() does before its loop.
        optimizer.bh.memory = optimizer.swarm.position
        optimizer.vh.memory = optimizer.swarm.position
        optimizer.swarm.pbest_cost = np.full(optimizer.swarm_size[0], np.inf)
        self._optimizer = optimizer
        self._iteration = 0

    def ask(self) -> np.ndarray:
        return np.array(self._optimizer.swarm.position, dtype=float)

    def tell(self, costs: np.ndarray) -> None:
        opt = self._optimizer
        swarm = opt.swarm
        swarm.current_cost = np.asarray(costs, dtype=float)
        swarm.pbest_pos, swarm.pbest_cost = self._compute_pbest(swarm)
        swarm.best_pos, swarm.best_cost = opt.top.compute_gbest(swarm)
        swarm.options = opt.oh(opt.options, iternow=self._iteration, itermax=self.config.iterations)
        swarm.velocity = opt.top.compute_velocity(swarm, opt.velocity_clamp, opt.vh, opt.bounds)
        swarm.position = opt.top.compute_position(swarm, opt.bounds, opt.bh)
        self._iteration += 1
