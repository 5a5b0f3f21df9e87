"""pyswarms without its side effects on logging.

Each pyswarms `Reporter` (one is built when pyswarms is imported, several
more with every optimizer) runs `logging.config.dictConfig` on the root
logger, replacing the host's handlers and opening `report.log` in the
current directory, unless the environment variable LOG_CFG names a logging
config. While pyswarms is imported or an optimizer is built we point LOG_CFG
at a config that changes nothing.
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

_NOOP_CONFIG = Path(__file__).with_name("pyswarms_logging.yaml")
_LOCK = threading.Lock()


@contextmanager
def no_logging_setup() -> Iterator[None]:
    """Inside the block, building a pyswarms Reporter leaves logging alone."""
    with _LOCK:
        previous = os.environ.get("LOG_CFG")
        os.environ["LOG_CFG"] = str(_NOOP_CONFIG)
        try:
            yield
        finally:
            if previous is None:
                os.environ.pop("LOG_CFG", None)
            else:
                os.environ["LOG_CFG"] = previous


def import_pyswarms(module: str = "pyswarms") -> ModuleType:
    """Import a pyswarms module without its logging side effects (importing
    pyswarms builds a Reporter at module level)."""
    with no_logging_setup():
        return importlib.import_module(module)


def global_best_pso(
    n_particles: int,
    dimensions: int,
    options: dict[str, float],
    bounds: tuple[np.ndarray, np.ndarray],
    velocity_limit: float,
) -> Any:
    """A pyswarms GlobalBestPSO whose particles stop at the bounds
    (`bh_strategy="nearest"`; the default "periodic" wraps them around to the
    far side of the range). Draws its initial swarm from numpy's global RNG.

    `velocity_limit` > 0 gives pyswarms a velocity clamp of plus or minus
    that share of each dimension's range: it draws the initial velocities
    from within it (so they point either way, in proportion to the range)
    and keeps every later velocity inside it. 0 keeps pyswarms' own start,
    velocities from [0, 1) in every dimension whatever its range: all
    positive, and in a range 0.4 wide (the default strength bounds) enough
    to carry every particle to the top bound in one step."""
    clamp = None
    if velocity_limit > 0:
        width = np.asarray(bounds[1], dtype=float) - np.asarray(bounds[0], dtype=float)
        clamp = (-velocity_limit * width, velocity_limit * width)
    with no_logging_setup():
        from pyswarms.single.global_best import GlobalBestPSO

        return GlobalBestPSO(
            n_particles=n_particles,
            dimensions=dimensions,
            options=dict(options),
            bounds=bounds,
            velocity_clamp=clamp,
            bh_strategy="nearest",
        )
