"""A run's result as plain text: scores, the recommendation (or the plain
statement that there is none), the held-out check with its p-value, and the
Pareto front as a table. Pure formatting, shared by the command line and any
page that shows a result as text."""

from __future__ import annotations

import math

from optimize.scoring.evaluation import Evaluation
from optimize.guard.objective import GUARD, KL, TargetObjective, gain_phrase, uses_task
from optimize.run.results import OptimizationResult
from optimize.guard.split import PairedTest


def score_text(score: float, stderr: float) -> str:
    return f"{score:.4f}" + ("" if math.isnan(stderr) else f" ± {stderr:.4f}")


def gain_text(result: OptimizationResult) -> str:
    """Best minus baseline in the run's unit (points, or nats per token)."""
    return gain_phrase(result.objective, result.best.score, result.baseline.score)


def scored_text(result: OptimizationResult) -> str:
    """What the search scored: the task's documents (and how they were split),
    or the vector's held-out prompts for concept strength."""
    if not uses_task(result.objective):
        return (
            f"{result.samples} held-out concept and contrast prompts of the vector "
            "(it was rebuilt from the rest for the search), no task"
        )
    documents = f"{result.samples} documents"
    if result.split is not None:
        documents += (
            f" searched ({result.split.fraction:.0%} of the task held out, "
            f"split seed {result.split.seed})"
        )
    return documents


def setting_text(evaluation: Evaluation) -> str:
    return ", ".join(
        f"layer {layer} alpha {alpha:g}"
        for layer, alpha in zip(evaluation.layers, evaluation.alphas, strict=True)
    )


def paired_text(test: PairedTest) -> str:
    stderr = "" if math.isnan(test.stderr_points) else f" ± {test.stderr_points:.1f}"
    return (
        f"gain {test.gain_points:+.1f}{stderr} points; {test.fixed} documents fixed, "
        f"{test.broken} broken (exact sign test p = {test.p_value:.3g})"
    )


def front_table(result: OptimizationResult) -> list[str]:
    """The Pareto front, one row per setting (KL ascending), the recommended one marked."""
    front = result.front
    if not front:
        return []
    recommended = result.recommendation.evaluation
    with_guard = any(not math.isnan(e.metrics.get(GUARD, math.nan)) for e in front)
    lines = [
        "Pareto front (target vs KL" + (" vs guard task" if with_guard else "") + "):",
        "     target   KL      " + ("guard   " if with_guard else "") + "setting",
    ]
    for evaluation in front:
        mark = " *" if recommended is not None and evaluation == recommended else "  "
        guard = f"{evaluation.metrics[GUARD]:.4f}  " if with_guard else ""
        lines.append(
            f"{mark}  {evaluation.score:.4f}  {evaluation.metrics[KL]:.4f}  {guard}"
            f"{setting_text(evaluation)}"
        )
    if recommended is not None:
        lines.append("  (* recommended)")
    return lines


def summary_lines(result: OptimizationResult) -> list[str]:
    """What `python -m optimize` prints after a run."""
    scored = (
        f"task {result.fitness.task}, metric {result.metric}, {scored_text(result)}"
        if uses_task(result.objective)
        else f"concept strength (nats per token) on {scored_text(result)}"
    )
    lines = [
        scored,
        f"objective {result.objective}"
        + (
            f" (KL budget {result.objective_options.kl_budget:g})"
            if result.objective != TargetObjective.name
            else ""
        ),
        f"baseline {score_text(result.baseline.score, result.baseline.stderr)}",
        f"best     {score_text(result.best.score, result.best.stderr)} "
        f"({gain_text(result)})"
        + (
            f", KL {result.best.metrics[KL]:.4f}"
            if not math.isnan(result.best.metrics.get(KL, math.nan))
            else ""
        ),
    ]
    if result.first_round is not None:
        lines.append(result.first_round.line(len(result.evaluations)))
    for tuned in result.tuned():
        lines.append(f"vector {tuned.vector.index + 1}: layer {tuned.layer}, alpha {tuned.alpha:g}")
    target_only = result.target_only_best
    if target_only.setting.key != result.best.setting.key:
        kl = target_only.metrics.get(KL, math.nan)
        lines.append(
            f"target-only best {score_text(target_only.score, target_only.stderr)} at "
            f"{setting_text(target_only)}" + ("" if math.isnan(kl) else f", KL {kl:.4f}")
        )
    recommendation = result.recommendation
    lines.append(("recommended: " if recommendation.evaluation else "") + recommendation.reason)
    held = result.heldout
    if held is not None:
        where = held.documents or f"{held.samples} documents the search never saw"
        lines += [
            f"held-out task {held.fitness.task}, {held.samples} documents the search never saw"
            if result.split is None
            else f"held-out: {where}",
            f"  baseline {score_text(held.baseline.score, held.baseline.stderr)}",
            f"  best     {score_text(held.best.score, held.best.stderr)} "
            f"({held.gain_points:+.1f} points)",
        ]
        if held.paired is not None:
            lines.append(f"  paired: {paired_text(held.paired)}")
        if held.target_only is not None:
            gain = 100.0 * (held.target_only.score - held.baseline.score)
            lines.append(
                f"  target-only best {score_text(held.target_only.score, held.target_only.stderr)}"
                f" ({gain:+.1f} points)"
            )
            if held.target_only_paired is not None:
                lines.append(f"  paired: {paired_text(held.target_only_paired)}")
    lines += front_table(result)
    return lines
