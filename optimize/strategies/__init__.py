"""Search strategies behind an ask/tell seam.

A strategy only proposes positions and learns their costs; the search loop
(`optimize.search`) owns everything else: decoding, the cache, cancel,
history, callbacks and the random state. Adding a strategy (Optuna's TPE or
CMA-ES, random search) is one class and one line in `STRATEGIES`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from steering.errors import InvalidInputError

if TYPE_CHECKING:
    from optimize.config import PsoConfig


class Strategy(ABC):
    """Proposes batches of positions in the box `bounds` and learns their costs.

    The loop calls `ask()` then `tell(costs)` once per iteration,
    `config.iterations` times; a cancelled run stops between them. Every call
    (the constructor too) runs with numpy's global generator holding the
    search's own seeded stream, so a strategy may draw from `np.random` (as
    pyswarms does) or seed its own generator from `config.seed`.
    """

    name: ClassVar[str]

    def __init__(self, bounds: tuple[np.ndarray, np.ndarray], config: PsoConfig) -> None:
        self.bounds = bounds
        self.config = config

    @abstractmethod
    def ask(self) -> np.ndarray:
        """The next batch of positions, shape [n, dimensions], inside `bounds`."""

    @abstractmethod
    def tell(self, costs: np.ndarray) -> None:
        """The costs of the last batch, in its order: lower is better, +inf for
        a setting that could not be scored."""


def _registry() -> dict[str, type[Strategy]]:
    # Optuna is imported by the Optuna strategies only when one is built.
    from optimize.strategies.optuna_samplers import CmaEsStrategy, TpeStrategy
    from optimize.strategies.pso import PsoStrategy

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
        raise InvalidInputError(
            f"Unknown search strategy {name!r}; known strategies: "
            f"{', '.join(sorted(STRATEGIES))}."
        )
    return cls
