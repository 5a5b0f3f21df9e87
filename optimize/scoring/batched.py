"""The search loop's evaluator for a fitness that scores a whole iteration's
settings in one batched pass (`metrics_many`, built on steering/batched.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from optimize.scoring.metrics import Metrics
from steering.vector import SteeringVector


def batched_evaluator(
    metrics_many: Callable[[Sequence[Sequence[SteeringVector]]], Sequence[Metrics]],
    place: Callable[[Any], Sequence[SteeringVector]],
) -> Callable[[Sequence[Any]], Iterator[Metrics]]:
    """The search loop's batch hook for a fitness that scores many settings
    at once: the vectors of every setting of an iteration (`place(setting)`)
    go to `metrics_many` together. Lazy: nothing is scored until the loop
    asks for the first result, so a cancel before the iteration's first
    evaluation scores nothing."""

    def evaluate(settings: Sequence[Any]) -> Iterator[Metrics]:
        if settings:
            yield from metrics_many([place(setting) for setting in settings])

    return evaluate
