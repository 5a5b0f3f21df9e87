"""A small optimization result to test what reads, writes and shows results."""

from __future__ import annotations

import math
from typing import Any

from optimize import (
    Evaluation,
    FitnessConfig,
    OptimizationResult,
    PsoConfig,
    SearchSpace,
    VectorRecord,
)


def sample_result(**changes: Any) -> OptimizationResult:
    """A small two-vector result: a baseline, three settings (one cached) and
    the best at layers (4, 5); `changes` replace any field."""
    baseline = Evaluation(-1, -1, (), (), 0.5, 0.05, 1.0)
    history = [
        baseline,
        Evaluation(0, 0, (3, 5), (1.25, -2.0), 0.55, 0.049, 1.1),
        Evaluation(0, 1, (4, 5), (0.5, 0.0), 0.62, math.nan, 1.2),
        Evaluation(1, 0, (4, 5), (0.5, 0.0), 0.62, math.nan, 0.0, cached=True),
        Evaluation(1, 1, (2, 2), (3.0, 3.0), 0.40, 0.05, 1.3),
    ]
    values = dict(
        baseline=baseline,
        best=history[2],
        history=history,
        vector_indices=(0, 2),
        vectors=(
            VectorRecord(0, 12, 2.0, ("joy",), ("grief",)),
            VectorRecord(2, 8, 1.0, ("calm",)),
        ),
        seed=7,
        fitness=FitnessConfig("steer_sentiment", limit=50),
        space=SearchSpace(2, 5, -4.0, 4.0),
        pso=PsoConfig(particles=2, iterations=2, seed=7),
        model="SmolLM2-135M-Instruct",
        num_layers=30,
        metric="acc,none",
        higher_is_better=True,
        samples=50,
        cancelled=False,
        wall_seconds=4.6,
    )
    return OptimizationResult(**(values | changes))


def recommending(result: OptimizationResult) -> OptimizationResult:
    """`result` as if its best search setting had passed the confirmation
    (12 documents fixed, 1 broken): what a run that found a real gain gives,
    for tests of what happens next (applying it). A tiny random model's best
    that did not beat its baseline is lifted above it first."""
    import dataclasses

    from optimize.guard.split import paired_test
    from optimize.guard.verdict import Confirmation
    from optimize.scoring.metrics import Metrics

    best = result.best
    if best.metrics.get("kl_skipped") == 1.0 or best.score <= result.baseline.score:
        lifted = dataclasses.replace(best, score=result.baseline.score + 0.5, metrics=Metrics())
        history = [lifted if e is best else e for e in result.history]
        result = dataclasses.replace(result, history=history, best=lifted)
        best = lifted
    test = paired_test([0.0] * 13, [1.0] * 12 + [-1.0])
    finalist = dataclasses.replace(best, iteration=result.pso.iterations, particle=0)
    confirmation = Confirmation(13, "13 documents", result.baseline, (finalist,), (test,), 0.05)
    changed = dataclasses.replace(
        result, confirmation=confirmation, loops=(), cancelled=False, confirm_planned=True
    )
    assert changed.verdict.recommended is not None, changed.verdict.headline
    return changed
