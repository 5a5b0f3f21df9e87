"""The ask/tell seam every search strategy implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar

import numpy as np

if TYPE_CHECKING:
    from optimize.config.configs import PsoConfig


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
