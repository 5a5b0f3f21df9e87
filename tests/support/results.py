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
