"""(h) The default run's verdict, checked against its held-out documents.

On every shipped task and the demo, over several seeds (each seed draws its
own split of the documents and its own swarm), the run a user gets with the
defaults: `RunSettings` from the task alone (plus the demo's held-out task),
assembled and run exactly as `python -m optimize` and the Optimize tab do.
Per run: the best candidate's gain on the search documents, its (or the
recommended finalist's) gain on the confirmation documents with the stated
interval, the gain on the held-out documents, and the verdict.

The targets it reports:
- no recommended setting loses on the held-out documents with p < 0.05;
- where a setting is recommended, its held-out gain is positive in at least
  80 % of runs;
- the stated interval (the confirmation's) covers the held-out gain in at
  least 80 % of runs.

Vectors: the demo's joy-minus-grief vector (presets/sentiment) on the
sentiment tasks; a task-pairs vector built from 20 reserved documents of
steer_health on steer_health (its documents are never scored).
"""

from __future__ import annotations

import time
from typing import Any

from bench._common import TASKS, Bench, log, table

# (search task, held-out task or None: the search task's own held-out share)
TASKS_RUN = {
    "steer_sentiment": ("steer_sentiment", None),
    "steer_health": ("steer_health", None),
    "demo": ("sentiment_search", "sentiment_heldout"),
}


def _vector(steerer: Any, name: str) -> Any:
    from presets import load_preset
    from steering import capture, capture_vector
    from steering.lm_eval_tasks import task_source

    if name == "steer_health":
        return capture(steerer, task_source("steer_health", str(TASKS), docs=20, seed=0), 8, 1.0)
    preset = load_preset("sentiment")
    return capture_vector(steerer, list(preset.concept), preset.layer, 1.0, list(preset.contrast))


def _points(test: Any) -> str:
    if test is None:
        return ""
    low, high = test.interval()
    return f"{test.gain_points:+.1f} [{low:+.0f}, {high:+.0f}] p={test.p_value:.2g}"


def run(bench: Bench, seeds: int = 5, tasks: tuple[str, ...] = tuple(TASKS_RUN)) -> dict[str, Any]:
    from optimize import run_optimization
    from optimize.guard.verdict import RECOMMENDED
    from optimize.run.assembly import assembled
    from optimize.run.settings import RunSettings

    steerer = bench.steerer
    rows: list[list[str]] = []
    records: list[dict[str, Any]] = []
    for name in tasks:
        search_task, heldout_task = TASKS_RUN[name]
        steerer.reset()
        steerer.set_vectors([_vector(steerer, name)])
        for seed in range(seeds):
            given: dict[str, Any] = {"task": search_task, "task_folder": str(TASKS), "seed": seed}
            if heldout_task:
                given["heldout_task"] = heldout_task
            settings = RunSettings.from_values(given)
            cpu0, wall0 = time.process_time(), time.perf_counter()
            with assembled(settings, steerer, [0]) as plan:
                result = run_optimization(steerer, [0], plan, started=wall0)
            cpu = time.process_time() - cpu0
            verdict = result.verdict
            held = None if result.heldout is None else result.heldout.paired
            confirmed = verdict.confirmed
            covered = None
            if confirmed is not None and held is not None:
                low, high = confirmed.interval()
                covered = low <= held.gain_points <= high
            record = {
                "task": name, "seed": seed, "kind": verdict.kind,
                "recommended": verdict.kind == RECOMMENDED,
                "searched_points": 100.0 * (result.best.score - result.baseline.score),
                "confirmed": None if confirmed is None else confirmed.to_dict(),
                "heldout": None if held is None else held.to_dict(),
                "covered": covered, "cpu_s": cpu, "headline": verdict.headline,
                "documents": {
                    "search": result.samples,
                    "confirm": 0 if result.confirmation is None else result.confirmation.samples,
                    "heldout": 0 if result.heldout is None else result.heldout.samples,
                },
            }
            records.append(record)
            log(f"(h) {name} seed {seed}: {verdict.kind}, held-out {_points(held)}, "
                f"{cpu:.0f} CPU s")
            rows.append([
                name, str(seed),
                f"{record['searched_points']:+.1f}",
                _points(confirmed),
                _points(held),
                "yes" if record["recommended"] else f"no ({verdict.kind})",
                "" if covered is None else ("yes" if covered else "no"),
                f"{cpu:.0f}",
            ])
        steerer.reset()
    recommended = [r for r in records if r["recommended"]]
    harmful = [
        r for r in recommended
        if r["heldout"] and r["heldout"]["gain_points"] < 0 and r["heldout"]["p_value"] < 0.05
    ]
    positive = [r for r in recommended if r["heldout"] and r["heldout"]["gain_points"] > 0]
    stated = [r for r in records if r["covered"] is not None]
    covering = [r for r in stated if r["covered"]]

    def share(part: list[Any], whole: list[Any]) -> str:
        if not whole:
            return "n/a (none)"
        return f"{len(part)}/{len(whole)} ({len(part) / len(whole):.0%})"

    markdown = (
        "### (h) The default run's verdict against its held-out documents\n\n"
        f"Each row is one default run (`RunSettings` from the task alone; the demo also names "
        f"its held-out task), seeds 0-{seeds - 1}. Gains in points with the 95 % interval and "
        "the two-sided sign test's p; 'confirmed' is the verdict's candidate on the "
        "confirmation documents, 'held-out' the same setting on documents nobody saw.\n\n"
        + table(["task", "seed", "searched", "confirmed", "held-out", "recommended",
                 "interval covers held-out", "CPU s"], rows)
        + "\n\n"
        f"- recommended with a held-out loss at p < 0.05: {len(harmful)} of {len(recommended)} "
        "recommendations (target: none)\n"
        f"- recommended and positive held out: {share(positive, recommended)} (target: 80 %)\n"
        f"- the stated interval covers the held-out gain: {share(covering, stated)} "
        "(target: 80 %)"
    )
    return {
        "markdown": markdown, "seeds": seeds, "runs": records,
        "harmful": len(harmful), "recommended": len(recommended),
        "positive": len(positive), "stated": len(stated), "covered": len(covering),
    }
