"""Optimize steering with particle swarms scored by lm-eval.

    from optimize import FitnessConfig, PsoConfig, SearchSpace, run_optimization, apply_best

    result = run_optimization(
        steerer, [0], FitnessConfig("steer_sentiment", include_path="tasks"),
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
    "apply_best": "optimize.pso",
    "run_optimization": "optimize.pso",
    "swarm_search": "optimize.pso",
    "Evaluation": "optimize.results",
    "HeldOutScores": "optimize.results",
    "OptimizationResult": "optimize.results",
    "Progress": "optimize.results",
    "VectorRecord": "optimize.results",
    "SearchSpace": "optimize.space",
    "Setting": "optimize.space",
    "round_half_away": "optimize.space",
}

__all__ = [
    "Evaluation",
    "FitnessConfig",
    "FitnessError",
    "FitnessOutcome",
    "HeldOutScores",
    "LmEvalFitness",
    "OptimizationCancelled",
    "OptimizationResult",
    "Progress",
    "PsoConfig",
    "SearchSpace",
    "Setting",
    "VectorRecord",
    "apply_best",
    "round_half_away",
    "run_optimization",
    "swarm_search",
]

if TYPE_CHECKING:
    from optimize.config import FitnessConfig, PsoConfig
    from optimize.errors import FitnessError, OptimizationCancelled
    from optimize.fitness import FitnessOutcome, LmEvalFitness
    from optimize.pso import apply_best, run_optimization, swarm_search
    from optimize.results import (
        Evaluation,
        HeldOutScores,
        OptimizationResult,
        Progress,
        VectorRecord,
    )
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
