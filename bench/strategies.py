"""(f) Fewer evaluations to the best: PSO, TPE and CMA-ES side by side.

Each strategy searches one concept vector's layer and alpha with a fixed
budget (particles x iterations evaluations) over several seeds, on the
shipped tasks and the demo. Reported per task and strategy: the evaluations
(distinct settings scored) a run needed to first reach 95 % of the best
score any run found, and the held-out score of the setting it recommends.

A setting's score does not depend on which strategy or seed asks for it, so
every run of a task shares one table of scored settings (`known`): the
figures are those of separate runs, the model work is done once. Each
iteration's new settings are scored in one batched pass.

Held out: the demo's search task is scored against its own held-out items
(`sentiment_heldout`); for the other tasks the documents after the first
`limit` are split off into a temporary held-out copy of the task.
"""

from __future__ import annotations

import json
import shutil
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench._common import TASKS, Bench, log, table

STRATEGY_NAMES = ("pso", "tpe", "cmaes")
# (search task, held-out task or None: split the search task's later documents)
TASK_PAIRS = {
    "steer_sentiment": ("steer_sentiment", None),
    "steer_health": ("steer_health", None),
    "demo": ("sentiment_search", "sentiment_heldout"),
}


def _split(folder: Path, task: str, limit: int) -> str:
    """A copy of `task` holding only its documents after the first `limit`."""
    yaml = (folder / f"{task}.yaml").read_text()
    data = folder / task / "data.jsonl"
    rows = data.read_text().splitlines()[limit:]
    (folder / task / "rest.jsonl").write_text("\n".join(rows) + "\n")
    name = f"{task}_rest"
    yaml = yaml.replace(f"task: {task}", f"task: {name}").replace("/data.jsonl", "/rest.jsonl")
    (folder / f"{name}.yaml").write_text(yaml)
    return name


def _to_reach(history: list[Any], threshold: float) -> int | None:
    """Distinct settings scored up to the first score >= threshold."""
    seen: set[Any] = set()
    for evaluation in history:
        seen.add(evaluation.setting.key)
        if evaluation.score >= threshold:
            return len(seen)
    return None


def _recording(
    fitness: Any, vector: Callable[[int, float], Any], known: dict[Any, Any]
) -> Callable[[Any], list[Any]]:
    """The search's evaluator for one task: scores the settings and records each in `known`,
    which the next strategy's run starts from (so a setting is scored once per task)."""

    def evaluate(settings: Any) -> list[Any]:
        vectors = [[vector(s.layers[0], s.alphas[0])] for s in settings]
        scored: list[Any] = fitness.metrics_many(vectors)
        for setting, metrics in zip(settings, scored, strict=True):
            known[setting.key] = metrics
        return scored

    return evaluate


def run(
    bench: Bench,
    tasks: tuple[str, ...] = tuple(TASK_PAIRS),
    seeds: int = 5,
    limit: int = 40,
    particles: int = 6,
    iterations: int = 5,
    alpha_decimals: int = 1,
) -> dict[str, Any]:
    from optimize import FitnessConfig, LmEvalFitness, PsoConfig, SearchSpace
    from optimize.guard.objective import make_objective
    from optimize.search.loop import run_search
    from presets import load_preset
    from steering import capture_vector
    from steering.capture import recapture

    steerer = bench.steerer
    n = bench.num_layers
    space = SearchSpace(1, min(15, n - 2), -3.0, 3.0, alpha_decimals)
    folder = Path(tempfile.mkdtemp(prefix="steerswarm-tasks-")) / "tasks"
    shutil.copytree(TASKS, folder)
    report: dict[str, Any] = {"space": space.__dict__, "limit": limit, "tasks": {}}
    rows = []
    try:
        preset = load_preset("sentiment")  # the demo's concept, on every task
        concept = capture_vector(steerer, preset.concept, min(8, n - 1), 1.0, preset.contrast)
        at_layer: dict[int, Any] = {}

        def vector(layer: int, alpha: float) -> Any:
            if layer not in at_layer:
                at_layer[layer] = recapture(steerer, concept, layer)
            return at_layer[layer].with_alpha(alpha)

        for name in tasks:
            search_task, heldout_task = TASK_PAIRS[name]
            heldout_task = heldout_task or _split(folder, search_task, limit)
            fitness = LmEvalFitness(steerer, FitnessConfig(search_task, str(folder), limit=limit))
            heldout = LmEvalFitness(steerer, FitnessConfig(heldout_task, str(folder), limit=limit))
            objective = make_objective("target", fitness.higher_is_better)
            known: dict[Any, Any] = {}
            evaluate = _recording(fitness, vector, known)
            runs: dict[str, list[Any]] = {}
            for strategy in STRATEGY_NAMES:
                for seed in range(seeds):
                    pso = PsoConfig(particles=particles, iterations=iterations, seed=seed)
                    outcome = run_search(
                        space, 1, pso, evaluate, objective, strategy=strategy, known=dict(known)
                    )
                    runs.setdefault(strategy, []).append(outcome.history)
                    log(f"(f) {name} {strategy} seed {seed}: {len(known)} settings scored so far")
            best_any = max(e.score for histories in runs.values() for h in histories for e in h)
            threshold = 0.95 * best_any
            held_cache: dict[Any, float] = {}
            task_report: dict[str, Any] = {"best_any": best_any, "strategies": {}}
            for strategy, histories in runs.items():
                reached, held = [], []
                for history in histories:
                    reached.append(_to_reach(history, threshold))
                    found = objective.best(history).setting
                    if found.key not in held_cache:
                        vectors = [vector(found.layers[0], found.alphas[0])]
                        held_cache[found.key] = heldout.metrics(vectors).target
                    held.append(held_cache[found.key])
                got = [r for r in reached if r is not None]
                budget = particles * iterations
                rows.append(
                    [name, strategy,
                     f"{len(got)}/{len(reached)}",
                     f"{statistics.median(got):g}" if got else f"> {budget}",
                     ", ".join("-" if r is None else str(r) for r in reached),
                     f"{statistics.mean(held):.3f}",
                     f"{min(held):.3f}-{max(held):.3f}"]
                )
                task_report["strategies"][strategy] = {"to_reach_95": reached, "heldout": held}
            task_report["settings_scored"] = len(known)
            report["tasks"][name] = task_report
            log(f"(f) {name}: best {best_any:.3f}, {len(known)} distinct settings scored")
            for row in rows[-len(runs):]:  # the task's rows, in case a later task is stopped
                log("(f) | " + " | ".join(row) + " |")
    finally:
        shutil.rmtree(folder.parent, ignore_errors=True)
    markdown = (
        "### (f) Evaluations to 95 % of the best, and the held-out score of the pick\n\n"
        f"One concept vector, layers {space.layer_min}-{space.layer_max}, alpha -3 to 3 "
        f"({alpha_decimals} decimal), {particles} x {iterations} = {particles * iterations} "
        f"evaluations per run, seeds 0-{seeds - 1}, {limit} search documents, {limit} held-out.\n\n"
        + table(
            ["task", "strategy", "runs reaching 95 %", "median evaluations", "per seed",
             "held-out score (mean)", "held-out range"],
            rows,
        )
    )
    report["markdown"] = markdown
    return json.loads(json.dumps(report, default=str))
