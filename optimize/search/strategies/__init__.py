"""Search strategies behind an ask/tell seam.

A strategy only proposes positions and learns their costs; the search loop
(`optimize.search.loop`) owns everything else: decoding, the cache, cancel,
history, callbacks and the random state. Adding a strategy (Optuna's TPE or
CMA-ES, random search) is one class and one line in `STRATEGIES`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from optimize.search.strategies.base import Strategy
from steering.errors import InvalidInputError

if TYPE_CHECKING:
    from optimize.config.configs import PsoConfig

__all__ = ["STRATEGIES", "Strategy", "make_strategy", "strategy_class"]


def _registry() -> dict[str, type[Strategy]]:
    # Optuna is imported by the Optuna strategies only when one is built.
    from optimize.search.strategies.optuna_samplers import CmaEsStrategy, TpeStrategy
    from optimize.search.strategies.pso import PsoStrategy

    return {cls.name: cls for cls in (PsoStrategy, TpeStrategy, CmaEsStrategy)}


STRATEGIES: dict[str, type[Strategy]] = _registry()


def make_strategy(
    name: str, bounds: tuple[np.ndarray, np.ndarray], config: PsoConfig
) -> Strategy:
    """The registered strategy `name`, built for `bounds`."""
    return strategy_class(name)(bounds, config)


def strategy_class(name: str) -> type[Strategy]:
    """The registered strategy `name`, or InvalidInputError naming the known ones."""
    cls = STRATEGIES.get(name)
    if cls is None:
        from steering.validate import typed

        raise InvalidInputError(
            f"Unknown search strategy {typed(name)}; known strategies: "
            f"{', '.join(sorted(STRATEGIES))}."
        )
    return cls
