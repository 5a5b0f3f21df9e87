"""(h) A first round on fewer documents: does it pay for itself on the demo?

The demo's search (`sentiment_search`, 100 items, 6 particles x 5
iterations, layers 1-15, alpha -3 to 3 in steps of 0.01, the demo's PSO
options) is run over several seeds two ways:

- **all documents**: every setting scored on all `limit` items (today's run);
- **first round on N**: the same search scoring every setting on the first
  `N` items only, then its `finalists` best distinct settings scored on all
  `limit` items, the best of those recommended.

For each seed: the setting each recommends, its score on all search items and
on the 100 held-out items (`sentiment_heldout`), and the model work each did,
counted exactly in tokens run through the model (padding included), so the
figure does not depend on the load of the machine. One evaluation's process
CPU time at N and at all items is measured side by side too, to show that
tokens are what the time follows.

Every setting either way visits is scored once on all items, per document
(`LmEvalFitness.document_scores`): lm-eval's `limit` takes the first items,
so the mean of the first N per-document values is exactly what a run on N
items scores (a document's answers do not depend on what shares its batch).
The ranking is the task's metric alone: the KL pass the default objective
adds per setting does not depend on the items (it could be screened on fewer
neutral sentences the same way; not measured here).
"""

from __future__ import annotations

import json
import statistics
import time
from typing import Any

from bench._common import TASKS, Bench, log, table

# The demo's search (bench/demo.py's DEMO, docs/demo.md).
DEMO_SPACE = (1, 15, -3.0, 3.0, 2)
DEMO_OPTIONS = {"c1": 0.5, "c2": 0.3, "w": 0.9}


def _tokens(fitness: Any) -> int:
    """Tokens one evaluation runs through the model, padding included."""
    return sum(int(batch.ids.numel()) for batch in fitness.prefix_scorer.batches)


def _cpu_per_evaluation(fitness: Any, vectors: list[Any], rounds: int) -> float:
    """The least process CPU seconds of `rounds` evaluations (other jobs only add)."""
    best = float("inf")
    for _ in range(rounds):
        t0 = time.process_time()
        fitness.metrics(vectors)
        best = min(best, time.process_time() - t0)
    return best


def _named(setting: Any) -> str:
    return f"layer {setting.layers[0]}, alpha {setting.alphas[0]:g}"


def run(
    bench: Bench,
    seeds: int = 5,
    limit: int = 100,
    first_round: int = 25,
    finalists: int = 3,
    particles: int = 6,
    iterations: int = 5,
    rounds: int = 2,
) -> dict[str, Any]:
    from optimize import FitnessConfig, LmEvalFitness, PsoConfig, SearchSpace
    from optimize.run.first_round import pick_finalists
    from optimize.guard.objective import make_objective
    from optimize.search.loop import run_search
    from steering import capture_vector
    from steering.capture import recapture
    from presets import load_preset

    steerer = bench.steerer
    space = SearchSpace(*DEMO_SPACE)
    tasks = str(TASKS)
    search = LmEvalFitness(steerer, FitnessConfig("sentiment_search", tasks, limit=limit))
    small = LmEvalFitness(steerer, FitnessConfig("sentiment_search", tasks, limit=first_round))
    heldout = LmEvalFitness(steerer, FitnessConfig("sentiment_heldout", tasks, limit=limit))
    objective = make_objective("target", search.higher_is_better)
    preset = load_preset("sentiment")
    concept = capture_vector(steerer, preset.concept, 8, 1.0, preset.contrast)
    at_layer: dict[int, Any] = {}

    def vectors_of(setting: Any) -> list[Any]:
        layer, alpha = setting.layers[0], setting.alphas[0]
        if layer not in at_layer:
            at_layer[layer] = recapture(steerer, concept, layer)
        return [at_layer[layer].with_alpha(alpha)]

    per_document: dict[Any, tuple[float, ...]] = {}

    def documents(setting: Any) -> tuple[float, ...]:
        if setting.key not in per_document:
            per_document[setting.key] = search.document_scores(vectors_of(setting))[1]
            log(f"(h) {len(per_document)} settings scored on all {limit} items")
        return per_document[setting.key]

    def scorer(items: int) -> Any:
        def evaluate(settings: Any) -> list[tuple[float, float]]:
            return [(statistics.fmean(documents(s)[:items]), 0.0) for s in settings]

        return evaluate

    tokens_all, tokens_small = _tokens(search), _tokens(small)
    pick_layer = recapture(steerer, concept, 7).with_alpha(1.05)  # the demo's pick, seed 0
    cpu_all = _cpu_per_evaluation(search, [pick_layer], rounds)
    cpu_small = _cpu_per_evaluation(small, [pick_layer], rounds)
    log(f"(h) one evaluation at layer 7: {cpu_all:.2f} CPU s on {limit} items, "
        f"{cpu_small:.2f} on {first_round}; tokens {tokens_all} vs {tokens_small}")

    held: dict[Any, float] = {}

    def held_out(setting: Any) -> float:
        if setting.key not in held:
            held[setting.key] = heldout.metrics(vectors_of(setting)).target
        return held[setting.key]

    rows, seeds_report = [], []
    for seed in range(seeds):
        pso = PsoConfig(
            particles=particles, iterations=iterations, seed=seed, **DEMO_OPTIONS
        )
        full = run_search(space, 1, pso, scorer(limit), objective).history
        screen = run_search(space, 1, pso, scorer(first_round), objective).history
        full_pick = objective.best(full).setting
        finals = [e.setting for e in pick_finalists(screen, objective, finalists)]
        # The best finalist on all items; the earlier-ranked one on a tie.
        screen_pick = max(finals, key=lambda s: (statistics.fmean(documents(s)), -finals.index(s)))
        distinct_full = len({e.setting.key for e in full})
        distinct_screen = len({e.setting.key for e in screen})
        work_full = distinct_full * tokens_all
        work_screen = distinct_screen * tokens_small + len(finals) * tokens_all
        entry = {
            "seed": seed,
            "all_items": {
                "pick": _named(full_pick),
                "search": statistics.fmean(documents(full_pick)),
                "heldout": held_out(full_pick),
                "settings": distinct_full,
                "tokens": work_full,
            },
            "first_round": {
                "pick": _named(screen_pick),
                "search": statistics.fmean(documents(screen_pick)),
                "heldout": held_out(screen_pick),
                "settings": distinct_screen,
                "finalists": [_named(s) for s in finals],
                "tokens": work_screen,
            },
        }
        seeds_report.append(entry)
        a, b = entry["all_items"], entry["first_round"]
        rows.append([
            seed,
            f"{a['pick']}: {a['search']:.2f} / {a['heldout']:.2f}",
            f"{b['pick']}: {b['search']:.2f} / {b['heldout']:.2f}",
            "yes" if a["pick"] == b["pick"] else "no",
            f"{work_full / work_screen:.2f}x",
        ])
        log("(h) | " + " | ".join(str(c) for c in rows[-1]) + " |")

    def mean_of(side: str, field: str) -> float:
        return statistics.fmean(e[side][field] for e in seeds_report)

    work_ratio = sum(e["all_items"]["tokens"] for e in seeds_report) / sum(
        e["first_round"]["tokens"] for e in seeds_report
    )
    markdown = (
        f"### (h) A first round on {first_round} of {limit} items, then the best "
        f"{finalists} on all\n\n"
        f"The demo's search, {particles} x {iterations}, seeds 0-{seeds - 1}, ranked by the "
        f"task. Each cell: the pick (layer, alpha), its score on all {limit} search items / "
        f"on {limit} held-out items. Model work in tokens run (exact); one evaluation at "
        f"layer 7 took {cpu_all:.2f} CPU s on {limit} items ({tokens_all} tokens) and "
        f"{cpu_small:.2f} s on {first_round} ({tokens_small} tokens).\n\n"
        + table(
            ["seed", f"all {limit} items", f"first round on {first_round}", "same pick",
             "less model work"],
            rows,
        )
        + f"\n\nMean held-out score of the pick: {mean_of('all_items', 'heldout'):.3f} "
        f"(all items) vs {mean_of('first_round', 'heldout'):.3f} (first round); "
        f"model work {work_ratio:.2f}x less in all.\n"
    )
    report = {
        "limit": limit,
        "first_round": first_round,
        "finalists": finalists,
        "tokens_per_evaluation": {"all": tokens_all, "first_round": tokens_small},
        "cpu_per_evaluation_layer7": {"all": cpu_all, "first_round": cpu_small},
        "seeds": seeds_report,
        "work_ratio": work_ratio,
        "markdown": markdown,
    }
    return json.loads(json.dumps(report, default=str))
