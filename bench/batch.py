"""(d) One swarm iteration batched against the same settings one after another.

The settings are the demo swarm's first iteration (the sentiment preset's
concept, layers 1-15, alpha -3 to 3, seed 0: the positions PSO asks for
first), scored on a shipped task, timed in interleaved rounds:

- one by one: `LmEvalFitness.metrics` per setting, as before batching;
- batched: `LmEvalFitness.metrics_many` on all of them, one shared pass per
  batch of inputs, the layers below the lowest steered layer run once;
- one evaluation: a single setting (the first), for "an iteration costs k
  times one evaluation".

Both orders start from the same stored hidden states (the unsteered
baseline is scored first, as a run does), and the answers of the two paths
are compared request by request.
"""

from __future__ import annotations

from typing import Any

from bench._common import TASKS, Bench, interleaved, log, ratio, table


def run(
    bench: Bench, task: str, limit: int | None, particles: int, rounds: int, seed: int = 0
) -> dict[str, Any]:
    import numpy as np

    from optimize import FitnessConfig, LmEvalFitness, PsoConfig, SearchSpace
    from optimize.search.loop import SearchRandomState
    from optimize.search.strategies import make_strategy
    from presets import load_preset
    from steering import capture_vector
    from steering.batched import row_limit, setting_deltas
    from steering.capture import recapture

    steerer = bench.steerer
    n = bench.num_layers
    space = SearchSpace(1, min(15, n - 2), -3.0, 3.0, 2)
    pso = PsoConfig(particles=particles, iterations=5, seed=seed)
    state = SearchRandomState(seed)
    with state.active():
        positions = np.asarray(make_strategy("pso", space.bounds(1), pso).ask())
    preset = load_preset("sentiment")
    concept = capture_vector(steerer, preset.concept, min(8, n - 1), 1.0, preset.contrast)
    settings = [space.decode(row) for row in positions]
    vectors = [
        [recapture(steerer, concept, s.layers[0]).with_alpha(s.alphas[0])] for s in settings
    ]
    fitness = LmEvalFitness(steerer, FitnessConfig(task, str(TASKS), limit=limit))
    fitness.metrics(())  # the baseline fills the store, as a run does first
    log(f"(d) batch: {task}, limit {limit}, {len(settings)} settings: "
        + ", ".join(f"L{s.layers[0]} a{s.alphas[0]:g}" for s in settings))
    timings = interleaved(
        {
            "batched": lambda: fitness.metrics_many(vectors),
            "one by one": lambda: [fitness.metrics(v) for v in vectors],
            "one evaluation": lambda: fitness.metrics(vectors[0]),
        },
        rounds,
    )
    scorer = fitness.prefix_scorer
    worst = 0.0
    same_scores = True
    if scorer is not None:
        deltas = [setting_deltas(v) for v in vectors]
        together = scorer.score_many(steerer, deltas, row_limit(scorer))
        for v, answers in zip(vectors, together, strict=True):
            alone = fitness.evaluate(v)
            pairs = zip(answers, alone.responses, strict=True)
            worst = max([worst] + [abs(a[0] - b[0]) for a, b in pairs])
        batched = [m.target for m in fitness.metrics_many(vectors)]
        same_scores = batched == [fitness.metrics(v).target for v in vectors]
    speedup = ratio(timings["one by one"], timings["batched"])
    versus_one = ratio(timings["batched"], timings["one evaluation"])
    rows = [
        [f"{len(settings)} settings one by one / batched",
         (f"{speedup.median:.2f}x ({speedup.low:.2f}-{speedup.high:.2f}); "
          f"CPU {speedup.cpu_median:.2f}x; fastest rounds {speedup.best:.2f}x")],
        ["batched iteration / one evaluation",
         (f"{versus_one.median:.2f} ({versus_one.low:.2f}-{versus_one.high:.2f}); "
          f"CPU {versus_one.cpu_median:.2f}")],
    ]
    seconds = ", ".join(f"{k} {t.median:.2f} s" for k, t in timings.items())
    markdown = (
        "### (d) A swarm iteration batched vs one by one\n\n"
        f"{task}, limit {limit}, the demo swarm's first iteration ({len(settings)} settings: "
        + ", ".join(f"layer {s.layers[0]} alpha {s.alphas[0]:g}" for s in settings)
        + f"), {rounds} interleaved rounds; medians: {seconds}.\n\n"
        + table(["figure", "median (range of rounds)"], rows)
        + f"\n\nLargest per-request log-likelihood difference batched vs alone: {worst:.2e}; "
        f"same scores: {'yes' if same_scores else 'no'}."
    )
    return {
        "markdown": markdown, "task": task, "limit": limit,
        "settings": [[s.layers, s.alphas] for s in settings],
        "timings": {k: t.to_dict() for k, t in timings.items()},
        "speedup": speedup.__dict__, "batched_over_one": versus_one.__dict__,
        "max_loglikelihood_difference": worst, "same_scores": same_scores,
    }
