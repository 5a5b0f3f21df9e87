"""What scoring a steering setting gives: named metrics, and the Fitness that
produces them.

A fitness reports every number it measured under a stable name (the target
task's metric as "target", its standard error as "target_stderr"; later KL to
the unsteered model, a guard task's score, ...). What the search ranks by is
decided separately, by an `optimize.guard.objective.Objective`, so a new metric is a
new name here and a new ranking is a new objective, not a change to the loop.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from optimize.config.configs import FitnessConfig
    from steering.vector import SteeringVector

TARGET = "target"
TARGET_STDERR = "target_stderr"
# Present when a setting was stopped early (optimize/scoring/racing.py): the
# number of documents its target was scored on, fewer than the fitness's.
PARTIAL = "partial_documents"


class Metrics(Mapping[str, float]):
    """A frozen mapping of metric name -> float (NaN allowed: "not measured").

    Two Metrics are equal when they hold the same names and values.
    """

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, float] | None = None, /, **named: float) -> None:
        merged: dict[str, float] = {}
        for name, value in {**(values or {}), **named}.items():
            if not isinstance(name, str) or not name:
                raise ValueError(f"A metric name must be a non-empty string, got {name!r}.")
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"Metric {name!r} must be a number, got {value!r}.")
            merged[name] = float(value)
        self._values = MappingProxyType(merged)

    @classmethod
    def of_target(cls, score: float, stderr: float = math.nan) -> Metrics:
        """Metrics holding only the target metric and its standard error."""
        return cls({TARGET: score, TARGET_STDERR: stderr})

    def __getitem__(self, name: str) -> float:
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __hash__(self) -> int:
        return hash(tuple(sorted(self._values.items())))

    def __repr__(self) -> str:
        return f"Metrics({dict(self._values)!r})"

    @property
    def target(self) -> float:
        """The target task's metric (NaN when absent)."""
        return self._values.get(TARGET, math.nan)

    @property
    def target_stderr(self) -> float:
        """The target metric's standard error (NaN when absent or unknown)."""
        return self._values.get(TARGET_STDERR, math.nan)

    def to_dict(self) -> dict[str, float | None]:
        """JSON-ready: NaN and infinities (which JSON lacks) become null."""
        return {k: v if math.isfinite(v) else None for k, v in self._values.items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Metrics:
        return cls({k: math.nan if v is None else float(v) for k, v in data.items()})


def as_metrics(value: Metrics | Sequence[float]) -> Metrics:
    """`value` as Metrics; a (score, stderr) pair is the target and its stderr
    (what model-free score functions in tests and benches return)."""
    if isinstance(value, Metrics):
        return value
    score, stderr = value
    return Metrics.of_target(score, stderr)


@runtime_checkable
class Fitness(Protocol):
    """Scores the model steered by a list of vectors. Built by the caller (for
    lm-eval: `LmEvalFitness(steerer, config)`) and passed into
    `run_optimization`, which never builds one itself.

    `config` is what the result file records as the task; `metric_key` names
    the target metric ("acc,none"), `higher_is_better` its direction and
    `samples` the documents each evaluation scores.

    A fitness may also offer `metrics_many(list of vector lists) -> list of
    Metrics`, scoring several settings together (`LmEvalFitness` does, in
    one batched pass); `run_optimization` then hands it each iteration's
    settings at once.
    """

    config: FitnessConfig
    samples: int
    higher_is_better: bool

    @property
    def metric_key(self) -> str: ...

    def metrics(self, vectors: Sequence[SteeringVector]) -> Metrics:
        """Every metric of the model steered by exactly `vectors` (() for
        unsteered), with the vectors active before the call back after it."""
        ...


@runtime_checkable
class PerDocumentFitness(Fitness, Protocol):
    """A Fitness that can also give the target metric per document, in a
    fixed document order: what a paired test of two settings compares."""

    def document_scores(
        self, vectors: Sequence[SteeringVector]
    ) -> tuple[Metrics, tuple[float, ...]]:
        """(metrics, per-document target values) of the model steered by `vectors`."""
        ...
