"""Does the Explore tab's layer scan point where the search goes? (docs/explore.md)

For each prompt vector (the sentiment preset's six positive and six negative
reviews; docs/vectors.md's joy-vs-grief vector) the layer scan is computed
with both measures, and searches are run as the app runs them (the one run
assembly, default settings unless the run says otherwise, the form's time
budget unless `--budget` says otherwise) with one or more seeds:

- `sentiment_search` and `steer_sentiment`: the default run (all documents,
  split with the seed, strength -0.4..0.4, layers a tenth to 60 % of the
  model), and the demo's own settings on `sentiment_search` (preset.json);
- concept strength: no task, the vector's own held-out prompts.

Per run it records the layer of the setting the run ends on (the verdict's
candidate: the recommendation, or the top candidate when none is
recommended), whether it was recommended, and whether each scan's suggested
range contains that layer. `steer_health` has no prompt vector (its vectors
are built from its documents, with no contrast prompts to scan), so it is
not part of this measurement.

    OMP_NUM_THREADS=1 python scripts/scan_vs_search.py --seeds 0 --out scan-vs-search.jsonl

Writes one JSON object per run (JSON lines) and prints a Markdown table.
Loads the model and runs for tens of minutes on a CPU: not a test.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
TASKS = str(ROOT / "tasks")


def _vectors(steerer: Any) -> dict[str, Any]:
    from presets import GRIEF, JOY, load_preset
    from steering import capture_vector

    preset = load_preset("sentiment")
    return {
        "sentiment": capture_vector(
            steerer, list(preset.concept), preset.layer, preset.alpha, list(preset.contrast)
        ),
        "joy": capture_vector(steerer, list(JOY), 8, 1.0, list(GRIEF)),
    }


def _runs(vector: str) -> list[tuple[str, dict[str, Any]]]:
    from presets import load_preset

    demo: dict[str, Any] = dict(load_preset("sentiment").optimize)
    demo["task_folder"] = TASKS
    runs: list[tuple[str, dict[str, Any]]] = [
        ("sentiment_search default", {"task": "sentiment_search", "task_folder": TASKS}),
        ("steer_sentiment default", {"task": "steer_sentiment", "task_folder": TASKS}),
        ("concept strength", {"objective": "concept", "holdout_fraction": 0.5}),
    ]
    if vector == "sentiment":
        runs.insert(0, ("demo (preset settings)", demo))
    return runs


def _search(
    steerer: Any, vector: Any, given: dict[str, Any], seed: int, budget: float
) -> dict[str, Any]:
    from optimize import run_optimization
    from optimize.run.assembly import assembled
    from optimize.run.settings import RunSettings

    settings = RunSettings.from_values({**given, "seed": seed, "budget": budget})
    steerer.set_vectors([vector])
    started, wall = time.process_time(), time.monotonic()
    with assembled(settings, steerer, [0]) as plan:
        result = run_optimization(steerer, [0], plan)
    verdict = result.verdict
    chosen = verdict.recommended or verdict.candidate or result.best
    return {
        "layer": chosen.layers[0],
        "alpha": chosen.alphas[0],
        "recommended": verdict.recommended is not None,
        "kind": verdict.kind,
        "evaluations": len(result.history),
        "cpu_s": round(time.process_time() - started, 1),
        "wall_s": round(time.monotonic() - wall, 1),
    }


def _form_budget() -> float:
    """The time budget the Optimize form starts with: what a newcomer's run gets."""
    from optimize.config.table import FIELDS

    return float(next(f for f in FIELDS if f.name == "budget").form_start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default="scan-vs-search.jsonl")
    parser.add_argument(
        "--budget", type=float, default=_form_budget(),
        help="minutes per run (default: the Optimize form's starting budget; 0: no limit)",
    )
    args = parser.parse_args()

    from steering import load_model, steerer_for
    from steering.explore import DPRIME, DPRIME_LOO, scan_vector

    loaded = load_model()
    steerer = steerer_for(loaded.model, loaded.tokenizer, loaded.name)
    rows = []
    with open(args.out, "w", encoding="utf-8") as out:
        for name, vector in _vectors(steerer).items():
            steerer.set_vectors([vector])
            scans = {m: scan_vector(steerer, vector, m) for m in (DPRIME, DPRIME_LOO)}
            for run, given in _runs(name):
                for seed in args.seeds:
                    found = _search(steerer, vector, given, seed, args.budget)
                    row = {
                        "vector": name, "run": run, "seed": seed, **found,
                        **{f"{m}_range": [s.low, s.high] for m, s in scans.items()},
                        **{f"{m}_best": s.best for m, s in scans.items()},
                        **{
                            f"{m}_contains": s.low <= found["layer"] <= s.high
                            for m, s in scans.items()
                        },
                    }
                    rows.append(row)
                    out.write(json.dumps(row) + "\n")
                    out.flush()
                    print(row, flush=True)
    steerer.reset()
    print("\n| vector | run | seed | layer found | recommended | d′ range | contains | "
          "d′ cross-validated range | contains |")
    print("|---|---|---:|---:|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['vector']} | {r['run']} | {r['seed']} | {r['layer']} | "
            f"{'yes' if r['recommended'] else 'no'} | {r['dprime_range'][0]}-"
            f"{r['dprime_range'][1]} | {'yes' if r['dprime_contains'] else 'no'} | "
            f"{r['dprime_loo_range'][0]}-{r['dprime_loo_range'][1]} | "
            f"{'yes' if r['dprime_loo_contains'] else 'no'} |"
        )
    hits = sum(r["dprime_contains"] for r in rows)
    print(f"\nd′ range contains the layer found: {hits} of {len(rows)} runs")


if __name__ == "__main__":
    main()
