"""Optimize steering with particle swarms scored by lm-eval.

    from optimize import (
        FitnessConfig, LmEvalFitness, PsoConfig, SearchSpace, run_optimization, apply_best,
    )

    fitness = LmEvalFitness(steerer, FitnessConfig("steer_sentiment", include_path="tasks"))
    result = run_optimization(
        steerer, [0], fitness,
        SearchSpace(layer_min=4, layer_max=24, alpha_min=-8, alpha_max=8), PsoConfig(seed=0),
    )
    result.save("results.json")
    apply_best(steerer, result)

Names are imported on first use, so `python -m optimize` can set up the
environment before torch, transformers and tqdm are imported.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "FitnessConfig": "optimize.config",
    "PsoConfig": "optimize.config",
    "FitnessError": "optimize.errors",
    "OptimizationCancelled": "optimize.errors",
    "FitnessOutcome": "optimize.fitness",
    "LmEvalFitness": "optimize.fitness",
    "Fitness": "optimize.metrics",
    "Metrics": "optimize.metrics",
    "OBJECTIVES": "optimize.objective",
    "Objective": "optimize.objective",
    "make_objective": "optimize.objective",
    "apply_best": "optimize.run",
    "check_heldout": "optimize.run",
    "run_optimization": "optimize.run",
    "SearchOutcome": "optimize.search",
    "run_search": "optimize.search",
    "swarm_search": "optimize.search",
    "STRATEGIES": "optimize.strategies",
    "Strategy": "optimize.strategies",
    "Evaluation": "optimize.results",
    "HeldOutScores": "optimize.results",
    "OptimizationResult": "optimize.results",
    "Progress": "optimize.results",
    "TunedVector": "optimize.results",
    "VectorRecord": "optimize.results",
    "SearchSpace": "optimize.space",
    "Setting": "optimize.space",
    "round_half_away": "optimize.space",
}

__all__ = [
    "OBJECTIVES",
    "STRATEGIES",
    "Evaluation",
    "Fitness",
    "FitnessConfig",
    "FitnessError",
    "FitnessOutcome",
    "HeldOutScores",
    "LmEvalFitness",
    "Metrics",
    "Objective",
    "OptimizationCancelled",
    "OptimizationResult",
    "Progress",
    "PsoConfig",
    "SearchOutcome",
    "SearchSpace",
    "Setting",
    "Strategy",
    "TunedVector",
    "VectorRecord",
    "apply_best",
    "check_heldout",
    "make_objective",
    "round_half_away",
    "run_optimization",
    "run_search",
    "swarm_search",
]

if TYPE_CHECKING:
    from optimize.config import FitnessConfig, PsoConfig
    from optimize.errors import FitnessError, OptimizationCancelled
    from optimize.fitness import FitnessOutcome, LmEvalFitness
    from optimize.metrics import Fitness, Metrics
    from optimize.objective import OBJECTIVES, Objective, make_objective
    from optimize.results import (
        Evaluation,
        HeldOutScores,
        OptimizationResult,
        Progress,
        TunedVector,
        VectorRecord,
    )
    from optimize.run import apply_best, check_heldout, run_optimization
    from optimize.search import SearchOutcome, run_search, swarm_search
    from optimize.strategies import STRATEGIES, Strategy
    from optimize.space import SearchSpace, Setting, round_half_away


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'optimize' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
