"""The trade-off a run found, and the one setting it recommends (or none).

Steering buys target score with side effects. The Pareto front holds the
settings no other setting beats on every count at once: the target metric (in
its direction), the KL on neutral text (lower is better) and, when a guard
task was scored, its score (higher is better). The recommendation is the
objective's best setting, offered only when it keeps the objective's limits
and beats the unsteered model on the target: otherwise the run says plainly
that nothing is worth applying.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from optimize.scoring.evaluation import Evaluation
from optimize.guard.objective import GUARD, KL, Objective, TargetObjective, gain_phrase, uses_task


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


def pareto_front(evaluations: Sequence[Evaluation], higher_is_better: bool = True) -> list[Evaluation]:
    """The non-dominated search evaluations, by KL ascending.

    The baseline, repeated visits (`cached`) and settings with an unmeasured
    axis are left out; of settings with equal metrics the earliest is kept.
    With no "kl" measured there is no front (an empty list)."""
    candidates = [e for e in evaluations if not e.is_baseline and not e.cached]
    with_guard = any(not math.isnan(e.metrics.get(GUARD, math.nan)) for e in candidates)
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
        seen.add(axes)
        front.append(evaluation)
    return sorted(front, key=lambda e: (e.metrics[KL], e.iteration, e.particle))


@dataclass(frozen=True)
class Recommendation:
    """What the run recommends applying: `evaluation` (None: nothing) and
    `reason`, a sentence shown to the user as it is."""

    evaluation: Evaluation | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "setting": None if self.evaluation is None else _where(self.evaluation),
            "reason": self.reason,
        }


def _where(evaluation: Evaluation) -> dict[str, Any]:
    return {"iteration": evaluation.iteration, "particle": evaluation.particle}


def _limits(objective: Objective, evaluation: Evaluation) -> str:
    kl = evaluation.metrics.get(KL, math.nan)
    if math.isnan(kl) or objective.name == TargetObjective.name:
        return ""
    return f" within the guard (KL {kl:.3f} <= budget {objective.options.kl_budget:g})"


def recommend(baseline: Evaluation, best: Evaluation | None, objective: Objective) -> Recommendation:
    """`best` (the objective's best search evaluation), if it keeps the limits, steers
    at all (some alpha is not 0) and ranks above the unsteered baseline (for
    the guarded objective: a better target); else no recommendation, with
    the reason. The one rule for "is there a gain to offer"."""
    if best is None or best.is_baseline:
        return Recommendation(None, "No setting was scored: nothing to apply.")
    if math.isnan(objective.value(best.metrics)) or not objective.within_limits(best.metrics):
        return Recommendation(
            None,
            f"No setting stayed within the guard (KL budget {objective.options.kl_budget:g}"
            + (
                f", guard task drop at most {objective.options.max_guard_drop:g} points"
                if not math.isnan(best.metrics.get("guard_drop", math.nan))
                else ""
            )
            + "): nothing to apply.",
        )
    steers = any(alpha != 0 for alpha in best.alphas)
    if not steers or not objective.better(best.metrics, baseline.metrics):
        return Recommendation(
            None,
            f"No setting{_limits(objective, best) and ' within the guard'} beat the unsteered "
            f"model: its best scored {best.score:.4f} against the baseline's "
            f"{baseline.score:.4f}. Nothing to apply.",
        )
    gain = gain_phrase(objective.name, best.score, baseline.score)
    scored = "the searched documents" if uses_task(objective.name) else "the held-out prompts"
    return Recommendation(
        best,
        f"The best score{_limits(objective, best)}: {best.score:.4f} against the baseline's "
        f"{baseline.score:.4f} ({gain} on {scored}).",
    )
