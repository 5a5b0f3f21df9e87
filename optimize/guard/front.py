"""The trade-off a run found.

Steering buys target score with side effects. The Pareto front holds the
settings that neither another setting nor the baseline beats on every count
at once: the target metric (in its direction), the KL on neutral text (lower
is better) and, when a guard task was scored, its score (higher is better).
What is recommended is the verdict's business (optimize/guard/verdict.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from optimize.guard.objective import GUARD, KL
from optimize.scoring.evaluation import Evaluation


def _axes(evaluation: Evaluation, higher_is_better: bool, with_guard: bool) -> tuple[float, ...]:
    """The front's axes, each oriented so that larger is better."""
    metrics = evaluation.metrics
    target = metrics.target if higher_is_better else -metrics.target
    axes = [target, -metrics.get(KL, math.nan)]
    if with_guard:
        axes.append(metrics.get(GUARD, math.nan))
    return tuple(axes)


def _dominates(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return all(x >= y for x, y in zip(a, b, strict=True)) and a != b


def pareto_front(
    evaluations: Sequence[Evaluation], higher_is_better: bool = True
) -> list[Evaluation]:
    """The non-dominated search evaluations, by KL ascending.

    Repeated visits (`cached`) and settings with an unmeasured axis are left
    out, and so is anything the baseline (KL 0) matches or beats on every
    count: it is no trade-off at all. Of settings with equal metrics the
    earliest is kept. With no "kl" measured there is no front (an empty list)."""
    candidates = [e for e in evaluations if not e.is_baseline and not e.cached]
    with_guard = any(not math.isnan(e.metrics.get(GUARD, math.nan)) for e in candidates)
    baselines = [
        _axes(e, higher_is_better, with_guard) for e in evaluations if e.is_baseline
    ]
    points = []
    for evaluation in candidates:
        axes = _axes(evaluation, higher_is_better, with_guard)
        if not any(math.isnan(x) for x in axes):
            points.append((evaluation, axes))
    front: list[Evaluation] = []
    seen: set[tuple[float, ...]] = set()
    for evaluation, axes in points:
        if axes in seen or any(_dominates(other, axes) for _, other in points):
            continue
        if any(all(b >= a for a, b in zip(axes, base, strict=True)) for base in baselines):
            continue
        seen.add(axes)
        front.append(evaluation)
    return sorted(front, key=lambda e: (e.metrics[KL], e.iteration, e.particle))
