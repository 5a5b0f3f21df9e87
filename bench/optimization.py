"""(c) A whole optimization: wall time and evaluations per minute.

`run_optimization` as the Optimize tab and `python -m optimize` run it: one
concept vector, 8 particles by 5 iterations (40 evaluations plus the
unsteered baseline) on a shipped task with a document limit. Evaluations per
minute count every particle visit (a repeated rounded setting is reused, not
rerun); the distinct settings actually scored are reported beside them.
"""

from __future__ import annotations

import time
from typing import Any

from bench._common import TASKS, Bench, log, table


def run(
    bench: Bench,
    task: str,
    limit: int | None,
    batch_size: int | None,
    particles: int,
    iterations: int,
    seed: int,
    compare_uncached: bool = False,
) -> dict[str, Any]:
    from bench.particle import supports_prefix_cache
    from optimize import FitnessConfig, LmEvalFitness, PsoConfig, SearchSpace, run_optimization
    from optimize.run.optimization import RunPlan

    steerer = bench.steerer
    n = bench.num_layers
    space = SearchSpace(
        layer_min=2, layer_max=n - 3, alpha_min=-8.0, alpha_max=8.0, alpha_decimals=1
    )
    config: dict[str, Any] = {"task": task, "include_path": str(TASKS), "limit": limit}
    if batch_size is not None:
        config["batch_size"] = batch_size
    fitness = FitnessConfig(**config)
    pso = PsoConfig(particles=particles, iterations=iterations, seed=seed)
    modes = [True, False] if compare_uncached and supports_prefix_cache() else [None]
    rows, runs = [], []
    for mode in modes:
        label = {None: "ours", True: "ours", False: "ours, no prefix cache"}[mode]
        steerer.set_vectors([bench.vector(round(0.4 * n), 2.0)])
        log(f"(c) optimization ({label}): {task}, limit {limit}, {particles}x{iterations}")
        started = time.perf_counter()
        options: dict[str, Any] = {} if mode is None else {"prefix_cache": mode}
        try:
            scorer = LmEvalFitness(steerer, fitness, **options)
            result = run_optimization(steerer, [0], RunPlan(scorer, space, pso))
        finally:
            steerer.reset()
        wall = time.perf_counter() - started
        evaluations = len(result.evaluations)
        scored = sum(1 for e in result.evaluations if not e.cached)
        per_minute = 60.0 * (evaluations + 1) / wall
        rows.append(
            [label, f"{wall:.1f} s", f"{evaluations} + baseline", f"{scored}",
             f"{per_minute:.1f}", f"{result.baseline.score:.3f}",
             (f"{result.best.score:.3f} (layer {result.best.layers[0]}, "
              f"alpha {result.best.alphas[0]:g})")]
        )
        runs.append(
            {"label": label, "wall_seconds": wall, "evaluations": evaluations,
             "distinct_scored": scored, "evaluations_per_minute": per_minute,
             "baseline": result.baseline.score, "best": result.best.to_dict(),
             "history": [e.to_dict() for e in result.history]}
        )
        log(f"  {label}: {wall:.1f} s, {per_minute:.1f} evaluations/min")
    markdown = (
        "### (c) A whole optimization\n\n"
        f"{task}, limit {limit}, one vector, layers {space.layer_min}-{space.layer_max}, "
        f"alpha {space.alpha_min:g} to {space.alpha_max:g} (1 decimal), {particles} particles x "
        f"{iterations} iterations, seed {seed}; includes building the fitness and recapturing "
        "the concept at each new layer.\n\n"
        + table(
            ["run", "wall time", "evaluations", "distinct settings scored", "evaluations / min",
             "baseline", "best"],
            rows,
        )
    )
    return {
        "markdown": markdown,
        "task": task,
        "limit": limit,
        "particles": particles,
        "iterations": iterations,
        "seed": seed,
        "runs": runs,
    }
