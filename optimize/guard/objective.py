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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar

from optimize.config.table import default
from steering.errors import InvalidInputError
from steering.validate import typed

if TYPE_CHECKING:
    from optimize.scoring.metrics import Metrics


class _Scored(Protocol):
    @property
    def metrics(self) -> Metrics: ...


S = TypeVar("S", bound=_Scored)


# Metric names of the capability guard (written by optimize.guard.kl.GuardedFitness).
KL = "kl"  # mean KL(unsteered || steered) over the neutral text set, nats per token
GUARD = "guard"  # the guard task's metric
GUARD_STDERR = "guard_stderr"
GUARD_DROP = "guard_drop"  # points the guard task lost against the unsteered model
# 1 when a setting's KL was not measured because the baseline dominates it
# (GuardedFitness.calibrate): it ranks by its target as if within the limits.
KL_SKIPPED = "kl_skipped"

# Defaults from the settings table. The KL budget was measured on
# SmolLM2-135M-Instruct (docs/guard.md): the largest mean KL over the neutral
# set at which its replies stayed fluent. The guard drop: about one standard
# error of a 100-document accuracy near 0.5, so a smaller drop is noise.
DEFAULT_KL_BUDGET = float(default("kl_budget"))
DEFAULT_MAX_GUARD_DROP = float(default("max_guard_drop"))


def _positive(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise InvalidInputError(f"The {name} must be a number above 0, got {value!r}.")
    if not math.isfinite(value):
        raise InvalidInputError(f"The {name} must be finite, got {value!r}.")
    return float(value)


@dataclass(frozen=True)
class ObjectiveOptions:
    """The limits a constrained objective ranks within: `kl_budget` in nats
    per token, `max_guard_drop` in points (x100) of the guard task."""

    kl_budget: float = DEFAULT_KL_BUDGET
    max_guard_drop: float = DEFAULT_MAX_GUARD_DROP

    def __post_init__(self) -> None:
        object.__setattr__(self, "kl_budget", _positive("KL budget", self.kl_budget))
        object.__setattr__(
            self, "max_guard_drop", _positive("maximum guard drop", self.max_guard_drop)
        )

    def to_dict(self) -> dict[str, float]:
        return {"kl_budget": self.kl_budget, "max_guard_drop": self.max_guard_drop}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> ObjectiveOptions:
        return cls(**(data or {}))


class Objective(ABC):
    """Ranks evaluations by their metrics. `higher_is_better` is the target
    metric's direction, as the fitness reports it; `options` the limits of
    constrained objectives (others ignore them)."""

    name: ClassVar[str]
    # The metrics a fitness must report for this objective (besides "target").
    needs: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self, higher_is_better: bool = True, options: ObjectiveOptions | None = None
    ) -> None:
        self.higher_is_better = bool(higher_is_better)
        self.options = options or ObjectiveOptions()

    def within_limits(self, metrics: Metrics) -> bool:
        """Whether a setting keeps this objective's limits (True when it has none)."""
        return True

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


class GuardedObjective(Objective):
    """The target metric among the settings within the guard's limits: mean
    KL on neutral text at most `kl_budget` and, when the fitness scores a
    guard task, a drop of at most `max_guard_drop` points there.

    A setting over a limit ranks below every setting within them; among
    those over, the smaller overshoot ranks higher (so a search that starts
    out of bounds is led back). The value of a setting over its limits is
    -(OVER_LIMIT + overshoot), below any target metric of magnitude < 1e6.
    A setting whose KL was not measured (NaN) ranks like a NaN target,
    unless it was skipped because the baseline dominates it (KL_SKIPPED): it
    then ranks by its target, which is at or below the baseline's, so it is
    never recommended and the search still learns how far below it is.
    """

    name = "guarded"
    needs = (KL,)
    OVER_LIMIT = 1e6

    def overshoot(self, metrics: Metrics) -> float:
        """0 within the limits; otherwise how far over, relative to each limit."""
        kl = metrics.get(KL, math.nan)
        if math.isnan(kl):
            return 0.0 if metrics.get(KL_SKIPPED) == 1.0 else math.nan
        over = max(0.0, kl - self.options.kl_budget) / self.options.kl_budget
        drop = metrics.get(GUARD_DROP, math.nan)
        if not math.isnan(drop):
            over += max(0.0, drop - self.options.max_guard_drop) / self.options.max_guard_drop
        return over

    def within_limits(self, metrics: Metrics) -> bool:
        return self.overshoot(metrics) == 0.0

    def better(self, a: Metrics, b: Metrics | None) -> bool:
        """As every objective, except that of two settings within the limits
        with the same target the one with the smaller KL wins: the gentler of
        two equal gains is recommended, and it is the one on the Pareto front."""
        if b is not None and self.within_limits(a) and self.value(a) == self.value(b):
            return a.get(KL, math.nan) < b.get(KL, math.nan)
        return super().better(a, b)

    def value(self, metrics: Metrics) -> float:
        over = self.overshoot(metrics)
        if over != 0.0:  # NaN stays NaN
            return -(self.OVER_LIMIT + over)
        target = metrics.target
        return target if self.higher_is_better else -target


class ConceptObjective(GuardedObjective):
    """"Concept strength": the guard's ranking of a `ConceptFitness`
    (optimize/scoring/concept.py), whose target is how much a setting raises the
    log-likelihood of held-out concept examples over contrast examples. So
    the best setting is the strongest push toward the concept among those
    whose KL on neutral text stays within the budget. Which fitness a run
    scores with is chosen by its caller from this name (`uses_task`)."""

    name = "concept"


OBJECTIVES: dict[str, type[Objective]] = {
    TargetObjective.name: TargetObjective,
    GuardedObjective.name: GuardedObjective,
    ConceptObjective.name: ConceptObjective,
}


def uses_task(name: str) -> bool:
    """Whether the objective `name` scores an lm-eval task (concept strength
    scores the vector's own held-out prompts instead)."""
    return name != ConceptObjective.name

def gain_phrase(name: str, best: float, baseline: float) -> str:
    """Best minus baseline in the unit of objective `name`: points of a
    task's metric (x100), or for concept strength (a gain whose baseline is
    0 by construction) nats per token, which x100 "points" would misread."""
    if uses_task(name):
        return f"{100.0 * (best - baseline):+.1f} points"
    return f"{best - baseline:+.4f} nats per token"


DEFAULT_OBJECTIVE = str(default("objective"))


def make_objective(
    name: str, higher_is_better: bool = True, options: ObjectiveOptions | None = None
) -> Objective:
    """The registered objective `name`, for a target metric of that direction."""
    cls = OBJECTIVES.get(name)
    if cls is None:
        raise InvalidInputError(
            f"Unknown objective {typed(name)}; known objectives: {', '.join(sorted(OBJECTIVES))}."
        )
    return cls(higher_is_better, options)
