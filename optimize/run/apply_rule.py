"""The one rule for applying a result to the active vectors, wherever the
button is: "Apply best" when a run ends, a point of its front, or a result
file opened from the Saved tab.

Each of those once decided for itself, and they disagreed: the Saved tab
applied a run whose best lost 70 points (alpha 47.67, strength 3.68), and a
+0.0 result, that "Apply best" refused. Now each asks `refusal` and applies
with `apply_result`. A result is refused when its verdict recommends nothing
(`gained`: no gain the confirmation documents bore out), when the setting is outside the limits (the
model's layers, the run's own layer range, steering/limits.py's alpha), or
when it was found on another model or for vectors that are no longer active.
A strength beyond steering/limits.py's is refused as the vector is placed
(it needs the direction rebuilt at the new layer).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from optimize.errors import ApplyRefused
from optimize.run.optimization import apply_best
from optimize.run.results import OptimizationResult
from optimize.scoring.evaluation import Evaluation
from optimize.scoring.placing import position_of
from steering.engine import Steerer
from steering.errors import InvalidInputError
from steering.limits import MAX_ABS_ALPHA
from steering.models import ModelInfo
from steering.vector import SteeringVector

__all__ = ["apply_result", "gain_refusal", "gained", "refusal"]


def gained(result: OptimizationResult) -> bool:
    """Whether the result has a gain to apply: its verdict recommends a setting
    (a gain confirmed on documents that did not rank it, replies that do not
    loop, no loss on the held-out check; optimize/guard/verdict.py)."""
    return result.verdict.recommended is not None


def gain_refusal(result: OptimizationResult) -> str | None:
    """The part of `refusal` that needs no model: why a result has nothing to
    apply (its verdict, in its own words), or None (a page can say it without
    waiting for the model)."""
    if gained(result):
        return None
    return result.verdict.headline


def refusal(
    result: OptimizationResult | None,
    evaluation: Evaluation | None,
    info: ModelInfo,
    vectors: Sequence[SteeringVector],
) -> str | None:
    """Why `evaluation` of `result` (None: its recommendation) may not be applied to
    `vectors` on the model `info`, for people; None when it may."""
    if result is None:
        return "Run an optimization first."
    no_gain = gain_refusal(result)
    if no_gain is not None:
        return no_gain
    if info.name != result.model or info.num_layers != result.num_layers:
        return (
            f"This result was found on {result.model} ({result.num_layers} layers); the "
            f"loaded model is {info.name} ({info.num_layers} layers)."
        )
    chosen = _chosen(result, evaluation)
    scored = {(e.iteration, e.particle): e.setting.key for e in result.evaluations}
    best = result.best
    if scored.get((best.iteration, best.particle)) != best.setting.key:
        return (
            "That setting is not one this optimization scored: its best is not in its "
            "history (an edited file?); run it again."
        )
    if (
        chosen is None
        or chosen.is_baseline
        or scored.get((chosen.iteration, chosen.particle)) != chosen.setting.key
    ):
        return (
            "That setting is not one this optimization scored; run it again or pick a point "
            "of its front."
        )
    space = result.space
    low, high = max(space.layer_min, 0), min(space.layer_max, info.num_layers - 1)
    for tuned in result.tuned_setting(chosen.setting):
        number = tuned.vector.index + 1
        if not low <= tuned.layer <= high:
            return (
                f"The setting puts vector #{number} at layer {tuned.layer}, outside the run's "
                f"layers {low} to {high}."
            )
        if not (math.isfinite(tuned.alpha) and abs(tuned.alpha) <= MAX_ABS_ALPHA):
            return (
                f"The setting gives vector #{number} alpha {tuned.alpha:g}, outside the limit "
                f"of ±{MAX_ABS_ALPHA:g}."
            )
    for tuned in result.tuned_setting(chosen.setting):
        try:
            position_of(vectors, tuned.vector)
        except InvalidInputError as exc:
            return str(exc)
    return None


def _chosen(result: OptimizationResult, evaluation: Evaluation | None) -> Evaluation | None:
    """`evaluation`, or the recommendation's evaluation on the search documents."""
    if evaluation is not None:
        return evaluation
    recommended = result.verdict.recommended
    return None if recommended is None else result.search_evaluation(recommended.setting)


def apply_result(
    steerer: Steerer, result: OptimizationResult | None, evaluation: Evaluation | None = None
) -> tuple[SteeringVector, ...]:
    """Make `evaluation` of `result` (None: its recommendation) the active
    vectors, or ApplyRefused with `refusal`'s reason; a refusal changes nothing."""
    why = refusal(result, evaluation, steerer.info, steerer.vectors)
    if why is not None or result is None:
        raise ApplyRefused(why or "Run an optimization first.")
    return apply_best(steerer, result, _chosen(result, evaluation))
