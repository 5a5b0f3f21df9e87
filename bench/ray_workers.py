"""Ray workers on the demo: the same search in this process, on 1 and on 2 Ray
workers, and the overhead of one dispatched evaluation.

    OMP_NUM_THREADS=1 python -m bench.ray_workers [--limit 16] [--particles 4]
        [--iterations 2] [--overhead 6] [--counts 1,2] [--device cpu] [--out DIR]

The demo's vector (presets/sentiment, captured at layer 8, alpha 1) is
searched on `sentiment_search` (layers 1-15, alpha -3..3, seed 0) with the
command line's fitness (the task plus the KL guard on the neutral set). Every
variant loads the model once per process (the driver, and each worker) and
must give the same history: where a Ray history parts from the in-process
one, the report names the first evaluation that differs and each metric's two
values (`first_difference`), so a difference can be traced. The search time
excludes the unsteered baseline (scored in the driver in every variant) and
the workers' start-up (reported apart). The overhead of a dispatch is a
worker's round trip minus the time the worker spent scoring, over
`--overhead` settings.

Writes ray_workers.json under --out (default bench/results) and prints a
markdown table. On a CPU machine each worker takes one core (Ray's num_cpus=1,
one torch thread), so 2 workers are 2 model replicas on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench._common import REPO, TASKS, log


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.ray_workers", description=__doc__.split("\n")[0]
    )
    p.add_argument("--limit", type=int, default=16, help="documents per evaluation (default 16)")
    p.add_argument("--particles", type=int, default=4)
    p.add_argument("--iterations", type=int, default=2)
    p.add_argument("--overhead", type=int, default=6, help="settings timed for the overhead")
    p.add_argument("--counts", default="1,2", help="worker counts to run (default 1,2)")
    p.add_argument("--device", default=None)
    p.add_argument("--model", default=None)
    p.add_argument("--gguf-file", default=None)
    p.add_argument("--out", default=str(REPO / "bench" / "results"))
    return p


def _same(a: Any, b: Any) -> bool:
    """Equal metrics, bit for bit; NaN ("not measured") equals NaN."""
    return a.keys() == b.keys() and all(
        float(a[k]) == float(b[k]) or (math.isnan(a[k]) and math.isnan(b[k])) for k in a
    )


def first_difference(got: Sequence[Any], want: Sequence[Any]) -> dict[str, Any] | None:
    """The first evaluation where history `got` parts from `want` (None when
    they are equal): its position, iteration, particle and setting, and per
    metric both values (hex, exact) and their difference."""
    for index, (a, b) in enumerate(zip(got, want, strict=False)):  # lengths compared below
        if a.setting == b.setting and _same(a.metrics, b.metrics):
            continue
        return {
            "index": index, "iteration": b.iteration, "particle": b.particle,
            "setting": [list(b.setting.layers), list(b.setting.alphas)],
            "other_setting": [list(a.setting.layers), list(a.setting.alphas)],
            "metrics": {
                name: {"got": float(a.metrics[name]).hex(), "want": float(value).hex(),
                       "difference": float(a.metrics[name]) - float(value)}
                for name, value in b.metrics.items()
                if not _same({name: a.metrics.get(name, math.nan)}, {name: value})
            },
        }
    if len(got) != len(want):
        return {"index": min(len(got), len(want)), "lengths": [len(got), len(want)]}
    return None


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    counts = [int(c) for c in args.counts.split(",")]
    import ray
    import torch

    from optimize import PsoConfig, SearchSpace, run_optimization
    from optimize.run.assembly import RunRecipe, search_fitness
    from optimize.run.optimization import RunPlan
    from optimize.run.settings import RunSettings
    from optimize.workers.ray import RayOptions, RayWorkers
    from steering import capture_vector, load_model, save_vectors, steerer_for

    folder = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    loaded = load_model(args.model, args.gguf_file, args.device)
    steerer = steerer_for(loaded.model, loaded.tokenizer, loaded.name)
    presets = REPO / "presets" / "sentiment"
    lines = [(presets / n).read_text().splitlines() for n in ("concept.txt", "contrast.txt")]
    vector = capture_vector(steerer, [t for t in lines[0] if t.strip()], 8, 1.0,
                            [t for t in lines[1] if t.strip()])
    path = save_vectors(folder / "sentiment.safetensors", [vector], steerer.info)
    del steerer, loaded
    settings = RunSettings.from_values(
        {"task": "sentiment_search", "task_folder": str(TASKS), "limit": args.limit}
    )
    recipe = RunRecipe.of_file(
        path, settings, model=args.model, gguf_file=args.gguf_file, device=args.device
    )
    space = SearchSpace(layer_min=1, layer_max=15, alpha_min=-3.0, alpha_max=3.0)
    pso = PsoConfig(particles=args.particles, iterations=args.iterations, seed=0)

    _, steerer, vectors = recipe.load()
    steerer.set_vectors(vectors)
    scored = search_fitness(steerer, settings, [])

    def search(workers: Any) -> tuple[float, Any]:
        started = time.perf_counter()
        plan = RunPlan(scored, space, pso, objective="guarded")
        result = run_optimization(steerer, [0], plan, workers=workers)
        return time.perf_counter() - started - result.baseline.seconds, result

    report: dict[str, Any] = {
        "limit": args.limit, "particles": args.particles, "iterations": args.iterations,
        "cpu_count": os.cpu_count(), "load_before": os.getloadavg(),
        "driver_torch_threads": torch.get_num_threads(),
    }
    log("in this process")
    report["local_seconds"], local = search(None)
    report["distinct_settings"] = local.paid_evaluations - 1
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    for count in counts:
        log(f"{count} Ray worker(s)")
        started = time.perf_counter()
        with RayWorkers(recipe, [0], RayOptions(workers=count, num_gpus=0)) as workers:
            report[f"start_{count}_seconds"] = time.perf_counter() - started
            seconds, result = search(workers)
            report[f"ray{count}_seconds"] = seconds
            parted = first_difference(result.history, local.history)
            report[f"ray{count}_same_history"] = parted is None
            report[f"ray{count}_first_difference"] = parted
            if count == 1:
                actor = workers.actors[0]
                overheads, inner = [], []
                for evaluation in local.evaluations[: args.overhead]:
                    t0 = time.perf_counter()
                    _metrics, spent = ray.get(actor.score_timed.remote(evaluation.setting))
                    overheads.append(time.perf_counter() - t0 - spent)
                    inner.append(spent)
                report["overhead_ms_median"] = 1000 * statistics.median(overheads)
                report["overhead_ms_max"] = 1000 * max(overheads)
                report["evaluation_seconds_median"] = statistics.median(inner)
    ray.shutdown()
    report["load_after"] = os.getloadavg()
    if {1, 2} <= set(counts):
        report["speedup_2_vs_1"] = report["ray1_seconds"] / report["ray2_seconds"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ray_workers.json").write_text(json.dumps(report, indent=2) + "\n")
    print("| variant | search seconds | start-up seconds | same history |")
    print("|---|---:|---:|---|")
    print(f"| this process | {report['local_seconds']:.1f} | - | - |")
    for count in counts:
        print(f"| {count} Ray worker(s) | {report[f'ray{count}_seconds']:.1f} | "
              f"{report[f'start_{count}_seconds']:.1f} | "
              f"{report[f'ray{count}_same_history']} |")
    if "speedup_2_vs_1" not in report:
        return 0
    print(f"\n2 workers vs 1: {report['speedup_2_vs_1']:.2f}x; overhead per dispatched "
          f"evaluation: median {report['overhead_ms_median']:.1f} ms (max "
          f"{report['overhead_ms_max']:.1f} ms) beside a median evaluation of "
          f"{report['evaluation_seconds_median']:.2f} s; {report['distinct_settings']} distinct "
          f"settings; load {report['load_before'][0]:.1f} before, "
          f"{report['load_after'][0]:.1f} after")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
