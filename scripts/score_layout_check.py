"""The suspects for a Ray history that parts from the in-process one,
checked without Ray on the bench's demo (bench/ray_workers.py): does a
setting's score depend on what its process scored before, or on the torch
thread count? Both would make an actor's metrics differ from the driver's.

    OMP_NUM_THREADS=1 python scripts/score_layout_check.py [--limit 8]

1. The bench's search (4 particles x 2 iterations, seed 0, task + KL guard)
   runs in this process; then the odd-numbered settings it scored are scored
   again, in order, on a fresh load of the model (another history: what a
   second worker sees), and compared bit for bit.
2. The first setting is scored with 1, then 2, then 1 torch threads.

Prints one line per comparison ("same" or each metric's two values in hex).
Loads the model twice and runs for minutes: not a test.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import REPO, TASKS
from optimize import PsoConfig, SearchSpace, run_optimization
from optimize.run.assembly import RunRecipe, search_fitness
from optimize.run.optimization import RunPlan
from optimize.run.settings import RunSettings
from optimize.scoring.placing import SettingScorer
from steering import capture_vector, load_model, save_vectors, steerer_for


def _recipe(limit: int) -> RunRecipe:
    loaded = load_model(None, None, None)
    steerer = steerer_for(loaded.model, loaded.tokenizer, loaded.name)
    presets = REPO / "presets" / "sentiment"
    lines = [(presets / n).read_text().splitlines() for n in ("concept.txt", "contrast.txt")]
    vector = capture_vector(steerer, [t for t in lines[0] if t.strip()], 8, 1.0,
                            [t for t in lines[1] if t.strip()])
    folder = Path(tempfile.mkdtemp(prefix="layout-check-"))
    path = save_vectors(folder / "sentiment.safetensors", [vector], steerer.info)
    settings = RunSettings.from_values(
        {"task": "sentiment_search", "task_folder": str(TASKS), "limit": limit}
    )
    return RunRecipe.of_file(path, settings)


def _scorer(recipe: RunRecipe) -> tuple[object, SettingScorer]:
    loaded, steerer, vectors = recipe.load()
    steerer.set_vectors(vectors)
    fitness = search_fitness(steerer, RunSettings.from_values(recipe.settings), [])
    return loaded, SettingScorer(steerer, vectors, [0], fitness)


def _compare(label: str, want, got) -> None:
    differ = {k: (float(want[k]).hex(), float(got[k]).hex()) for k in want if want[k] != got[k]}
    print(label, "same" if not differ else f"DIFFERENT {differ}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, default=8, help="documents per evaluation")
    args = parser.parse_args()
    recipe = _recipe(args.limit)
    loaded, scorer = _scorer(recipe)
    space = SearchSpace(layer_min=1, layer_max=15, alpha_min=-3.0, alpha_max=3.0)
    pso = PsoConfig(particles=4, iterations=2, seed=0)
    steerer = scorer.placer.steerer
    plan = RunPlan(scorer.fitness, space, pso, objective="guarded")
    result = run_optimization(steerer, [0], plan)
    paid = [e for e in result.evaluations if not e.cached]
    _other, fresh = _scorer(recipe)
    for k in range(1, len(paid), 2):
        e = paid[k]
        label = f"fresh load, {e.setting.layers} x {e.setting.alphas}:"
        _compare(label, e.metrics, fresh(e.setting))
    first = paid[0].setting
    scores: dict[int, list[Any]] = {}
    for threads in (1, 2, 1):
        torch.set_num_threads(threads)
        scores.setdefault(threads, []).append(scorer(first))
    _compare(f"1 vs 1 thread, {first.layers} x {first.alphas}:", scores[1][0], scores[1][1])
    _compare(f"1 vs 2 threads, {first.layers} x {first.alphas}:", scores[1][0], scores[2][0])
    del loaded, _other
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
