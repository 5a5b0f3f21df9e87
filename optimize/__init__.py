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
    "FitnessConfig": "optimize.config.configs",
    "PsoConfig": "optimize.config.configs",
    "FitnessError": "optimize.errors",
    "OptimizationCancelled": "optimize.errors",
    "FitnessOutcome": "optimize.scoring.fitness",
    "LmEvalFitness": "optimize.scoring.fitness",
    "Fitness": "optimize.scoring.metrics",
    "Metrics": "optimize.scoring.metrics",
    "OBJECTIVES": "optimize.guard.objective",
    "Objective": "optimize.guard.objective",
    "make_objective": "optimize.guard.objective",
    "apply_best": "optimize.run.optimization",
    "apply_result": "optimize.run.apply_rule",
    "ApplyRefused": "optimize.errors",
    "check_heldout": "optimize.run.optimization",
    "run_optimization": "optimize.run.optimization",
    "SearchOutcome": "optimize.search.loop",
    "run_search": "optimize.search.loop",
    "swarm_search": "optimize.search.loop",
    "STRATEGIES": "optimize.search.strategies",
    "Strategy": "optimize.search.strategies.base",
    "Evaluation": "optimize.run.results",
    "HeldOutScores": "optimize.run.results",
    "OptimizationResult": "optimize.run.results",
    "Progress": "optimize.run.results",
    "TunedVector": "optimize.run.results",
    "VectorRecord": "optimize.run.results",
    "SearchSpace": "optimize.config.space",
    "Setting": "optimize.config.space",
    "round_half_away": "optimize.config.space",
}

__all__ = [
    "OBJECTIVES",
    "STRATEGIES",
    "ApplyRefused",
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
    "apply_result",
    "check_heldout",
    "make_objective",
    "round_half_away",
    "run_optimization",
    "run_search",
    "swarm_search",
]

if TYPE_CHECKING:
    from optimize.config.configs import FitnessConfig, PsoConfig
    from optimize.config.space import SearchSpace, Setting, round_half_away
    from optimize.errors import ApplyRefused, FitnessError, OptimizationCancelled
    from optimize.guard.objective import OBJECTIVES, Objective, make_objective
    from optimize.run.apply_rule import apply_result
    from optimize.run.optimization import apply_best, check_heldout, run_optimization
    from optimize.run.results import (
        Evaluation,
        HeldOutScores,
        OptimizationResult,
        Progress,
        TunedVector,
        VectorRecord,
    )
    from optimize.scoring.fitness import FitnessOutcome, LmEvalFitness
    from optimize.scoring.metrics import Fitness, Metrics
    from optimize.search.loop import SearchOutcome, run_search, swarm_search
    from optimize.search.strategies import STRATEGIES, Strategy


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'optimize' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
