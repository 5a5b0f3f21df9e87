"""What the search ranks by: an Objective reduces an evaluation's named
metrics to one cost (lower is better), and is the one place that says which of
two evaluations is better.

The NaN rule lives here: a setting whose objective is NaN (the metric could
not be computed) never beats anything, and anything beats it. Ties keep the
earlier evaluation. A new ranking (a KL budget, concept strength) is one
subclass and one line in `OBJECTIVES`.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import TYPE_CHECKING, ClassVar, Protocol, TypeVar

from steering.errors import InvalidInputError

if TYPE_CHECKING:
    from optimize.metrics import Metrics


class _Scored(Protocol):
    @property
    def metrics(self) -> Metrics: ...


S = TypeVar("S", bound=_Scored)


class Objective(ABC):
    """Ranks evaluations by their metrics. `higher_is_better` is the target
    metric's direction, as the fitness reports it."""

    name: ClassVar[str]

    def __init__(self, higher_is_better: bool = True) -> None:
        self.higher_is_better = bool(higher_is_better)

    @abstractmethod
    def value(self, metrics: Metrics) -> float:
        """The number this objective maximises (NaN: could not be measured)."""

    def cost(self, metrics: Metrics) -> float:
        """What the search minimises: -value, and +inf for NaN (pyswarms and
        samplers handle inf, not NaN)."""
        value = self.value(metrics)
        return math.inf if math.isnan(value) else -value

    def better(self, a: Metrics, b: Metrics | None) -> bool:
        """Whether `a` beats `b` (None: nothing yet, which anything beats)."""
        if b is None:
            return True
        va, vb = self.value(a), self.value(b)
        if math.isnan(va):
            return False
        if math.isnan(vb):
            return True
        return va > vb

    def best(self, evaluations: Iterable[S]) -> S:
        """The best evaluation; the earliest one on a tie.

        Raises ValueError when there are none."""
        best: S | None = None
        for evaluation in evaluations:
            if best is None or self.better(evaluation.metrics, best.metrics):
                best = evaluation
        if best is None:
            raise ValueError("There are no evaluations to pick the best of.")
        return best

    def running_best(self, evaluations: Iterable[S]) -> list[S]:
        """The best evaluation so far after each of `evaluations`."""
        best: S | None = None
        out: list[S] = []
        for evaluation in evaluations:
            if best is None or self.better(evaluation.metrics, best.metrics):
                best = evaluation
            out.append(best)
        return out


class TargetObjective(Objective):
    """The target task's metric, in its own direction: today's behaviour."""

    name = "target"

    def value(self, metrics: Metrics) -> float:
        target = metrics.target
        return target if self.higher_is_better else -target


OBJECTIVES: dict[str, type[Objective]] = {
    TargetObjective.name: TargetObjective,
}


def make_objective(name: str, higher_is_better: bool = True) -> Objective:
    """The registered objective `name`, for a target metric of that direction."""
    cls = OBJECTIVES.get(name)
    if cls is None:
        raise InvalidInputError(
            f"Unknown objective {name!r}; known objectives: {', '.join(sorted(OBJECTIVES))}."
        )
    return cls(higher_is_better)
