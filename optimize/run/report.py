"""A run's result as plain text: the verdict, the scores behind it (search,
confirmation and held-out documents, with their paired tests) and the
Pareto front as a table. Pure formatting, shared by the command line and any
page that shows a result as text."""

from __future__ import annotations

import math

from optimize.guard.objective import GUARD, KL, TargetObjective, gain_phrase
from optimize.guard.split import PairedTest
from optimize.guard.verdict import p_phrase
from optimize.run.results import OptimizationResult
from optimize.scoring.evaluation import Evaluation


def score_text(score: float, stderr: float) -> str:
    return f"{score:.4f}" + ("" if math.isnan(stderr) else f" ± {stderr:.4f}")


def gain_text(result: OptimizationResult) -> str:
    """The top candidate minus the baseline in the run's unit (points, or nats per token)."""
    return gain_phrase(result.objective, result.best.score, result.baseline.score)


def scored_text(result: OptimizationResult) -> str:
    """What the search ranked settings on: the task's search documents, or the
    vector's held-out prompts for concept strength."""
    if not result.scores_task:
        return (
            f"{result.samples} held-out concept and contrast prompts of the vector "
            "(it was rebuilt from the rest for the search), no task"
        )
    return result.documents or f"{result.samples} documents"


def setting_text(evaluation: Evaluation) -> str:
    return setting_text_of(evaluation.layers, evaluation.alphas)


def paired_text(test: PairedTest, outcome: str = "") -> str:
    """"gain +15.7 ± 7.9 points; 22 documents fixed, 11 broken (exact sign
    test, two-sided p = 0.08)". `outcome` replaces the two-sided p: a
    finalist's one-sided test as the confirmation used it
    (`Confirmation.outcome_text`)."""
    stderr = "" if math.isnan(test.stderr_points) else f" ± {test.stderr_points:.1f}"
    return (
        f"gain {test.gain_points:+.1f}{stderr} points; {test.fixed} documents fixed, "
        f"{test.broken} broken (exact sign test, "
        f"{outcome or 'two-sided ' + p_phrase(test.p_value)})"
    )


def front_table(result: OptimizationResult) -> list[str]:
    """The Pareto front, one row per setting (KL ascending), the recommended one marked."""
    front = result.front
    if not front:
        return []
    chosen = result.verdict.recommended
    recommended = None if chosen is None else next(
        (e for e in front if e.setting.key == chosen.setting.key), None
    )
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


def evaluations_line(result: OptimizationResult) -> str:
    """How many evaluations the run scored, in the count its progress bar
    counted to (`final_progress`): the baseline, the settings, the
    confirmation and the held-out check, and the time it took."""
    progress = result.final_progress()
    settings = len(result.evaluations)
    cached = sum(1 for e in result.evaluations if e.cached)
    parts = [f"the baseline and {settings} setting{'s' if settings != 1 else ''}"
             + (f" ({cached} reused a cached score)" if cached else "")]
    if result.confirmation is not None:
        finalists = len(result.confirmation.finalists)
        parts.append(
            f"the baseline and {finalists} finalist{'s' if finalists != 1 else ''} on the "
            "confirmation documents"
        )
    if result.heldout is not None:
        parts.append("the baseline and the pick on the held-out documents")
    return (
        f"{progress.done} evaluations in {result.wall_seconds:.1f} s: " + "; ".join(parts)
        + (" (cancelled)" if result.cancelled else "") + "."
    )


def summary_lines(result: OptimizationResult) -> list[str]:
    """What `python -m optimize` prints after a run: the verdict first, in the
    words every view uses, then the numbers behind it."""
    verdict = result.verdict
    lines = [*verdict.lines, ""]
    scored = (
        f"task {result.fitness.task}, metric {result.metric}, ranked on {scored_text(result)}"
        if result.scores_task
        else f"concept strength (nats per token) on {scored_text(result)}"
    )
    lines += [
        scored,
        f"objective {result.objective}"
        + (
            f" (KL budget {result.objective_options.kl_budget:g})"
            if result.objective != TargetObjective.name
            else ""
        ),
        f"baseline        {score_text(result.baseline.score, result.baseline.stderr)}",
        f"top candidate   {score_text(result.best.score, result.best.stderr)} "
        f"({gain_text(result)} on the search documents) at {setting_text(result.best)}"
        + (
            f", KL {result.best.metrics[KL]:.4f}"
            if not math.isnan(result.best.metrics.get(KL, math.nan))
            else ""
        ),
    ]
    confirmation = result.confirmation
    if confirmation is not None:
        lines.append(
            f"confirmation: {confirmation.documents or f'{confirmation.samples} documents'}, "
            f"one-sided tests, Holm's step-down at {confirmation.level:.3g}"
        )
        baseline = confirmation.baseline
        lines.append(f"  baseline {score_text(baseline.score, baseline.stderr)}")
        for index, (finalist, test) in enumerate(
            zip(confirmation.finalists, confirmation.tests, strict=True)
        ):
            outcome = confirmation.outcome_text(index)
            lines.append(f"  {setting_text(finalist)}: {paired_text(test, outcome)}")
    for setting, reason in result.loops:
        lines.append(f"replies loop at {setting_text_of(setting.layers, setting.alphas)}: {reason}")
    held = result.heldout
    if held is not None:
        where = held.documents or f"{held.samples} documents the search never saw"
        lines += [
            f"held-out task {held.fitness.task}, {held.samples} documents the search never saw"
            if result.split is None or result.split.fraction == 0
            else f"held-out: {where}",
            f"  baseline {score_text(held.baseline.score, held.baseline.stderr)}",
            (f"  checked  {score_text(held.best.score, held.best.stderr)} "
             f"({held.gain_points:+.1f} points) at {setting_text(held.best)}"),
        ]
        if held.paired is not None:
            lines.append(f"  paired: {paired_text(held.paired)}")
    lines += front_table(result)
    return lines


def setting_text_of(layers: tuple[int, ...], alphas: tuple[float, ...]) -> str:
    return ", ".join(
        f"layer {layer} alpha {alpha:g}" for layer, alpha in zip(layers, alphas, strict=True)
    )
