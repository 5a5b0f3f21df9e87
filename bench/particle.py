"""(b) One particle evaluation: our fitness against the prototype and the floor.

All variants score one particle (one vector at one layer) on the same
documents, timed in the same interleaved rounds:

- prototype: what the 2024 prototype did per particle: a fresh default
  TaskManager (lm-eval's ~14,700 built-in tasks indexed, plus ours), a fresh
  HFLM at batch 1, and `simple_evaluate` with its defaults (bootstrap, sample
  logging, reseeding).
- ours: `LmEvalFitness.evaluate`, the fitness built once per run (its build
  is reported separately) and its prefix cache filled by the unsteered
  baseline, as `run_optimization` does first.
- ours at other layers: the same, for the prefix cache's scaling.
- every layer: our scorer with no stored states (`cache_bytes=0`): what a
  particle costs with nothing reused; the "full evaluation" of the scaling.
- lm-eval scoring: the fitness scoring through lm-eval's HFLM
  (`prefix_cache=False`), as it did before the prefix cache.
- floor: the bare model forward passes the requests need: one row per
  distinct model input (lm-eval scores all one-token choices of a context in
  one pass), sorted by length, longest first, batched as ours (the batch
  size, or more rows up to 1024 tokens), right-padded, `model(input_ids)`,
  steered, nothing else.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import time
from collections.abc import Sequence
from typing import Any

from bench._common import TASKS, Bench, interleaved, log, met, ratio, table

SPEEDUP_TARGET = 5.0
FLOOR_TARGET = 1.3
CACHE_SLACK = 0.15


def supports_prefix_cache() -> bool:
    from optimize.scoring.fitness import LmEvalFitness

    return "prefix_cache" in inspect.signature(LmEvalFitness).parameters


def _min_batch_tokens() -> int:
    from optimize.scoring import prefix

    return int(prefix.MIN_BATCH_TOKENS)


def build_fitness(
    bench: Bench, task: str, limit: int | None, batch_size: int | None, **kw: Any
) -> Any:
    from optimize import FitnessConfig, LmEvalFitness

    config: dict[str, Any] = {"task": task, "include_path": str(TASKS), "limit": limit}
    if batch_size is not None:
        config["batch_size"] = batch_size
    return LmEvalFitness(bench.steerer, FitnessConfig(**config), **kw)


def floor_batches(fitness: Any, batch_size: int, min_tokens: int) -> list[Any]:
    """The distinct model inputs of the fitness's loglikelihood requests,
    longest first, as right-padded [rows, width] tensors of `batch_size` rows,
    or more rows while they hold fewer than `min_tokens` tokens (the batching
    our scorer uses)."""
    import torch

    lm = fitness.lm
    rows: set[tuple[int, ...]] = set()
    for instance in fitness.requests("loglikelihood"):
        context, continuation = lm._encode_pair(*instance.args)
        # lm-eval's input: (context + continuation), left-truncated to
        # max_length + 1 tokens, minus the last token.
        rows.add(tuple((context + continuation)[-(lm.max_length + 1) :][:-1]))
    ordered = sorted(rows, key=lambda r: (-len(r), r))
    batches = []
    start = 0
    while start < len(ordered):
        size = max(1, batch_size, min_tokens // len(ordered[start]))
        chunk = ordered[start : start + size]
        start += size
        ids = torch.zeros((len(chunk), len(chunk[0])), dtype=torch.long)
        for i, row in enumerate(chunk):
            ids[i, : len(row)] = torch.tensor(row)
        batches.append(ids.to(lm.device))
    return batches


def run(
    bench: Bench,
    task: str,
    limit: int | None,
    batch_size: int | None,
    rounds: int,
    layer: int | None,
    alpha: float,
    scaling_layers: Sequence[int],
    prototype: bool = True,
) -> dict[str, Any]:
    import torch
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    model, tokenizer, steerer = bench.loaded.model, bench.loaded.tokenizer, bench.steerer
    n = bench.num_layers
    layer = round(0.4 * n) if layer is None else layer
    vectors = [bench.vector(layer, alpha)]
    cache = supports_prefix_cache()

    started = time.perf_counter()
    ours = build_fitness(bench, task, limit, batch_size)
    build_seconds = time.perf_counter() - started
    cached = cache and ours.prefix_scorer is not None
    if cached:
        every = build_fitness(bench, task, limit, batch_size, cache_bytes=0)
        lm_eval_path = build_fitness(bench, task, limit, batch_size, prefix_cache=False)
        started = time.perf_counter()
        ours.evaluate(())  # the baseline, which run_optimization scores first
        log(f"  unsteered baseline (fills the prefix store): {time.perf_counter() - started:.2f} s")
    bs = ours.config.batch_size
    min_tokens = _min_batch_tokens() if cached else 0
    batches = floor_batches(ours, bs, min_tokens)
    distinct = sum(int(b.shape[0]) for b in batches)
    requests = len(ours.requests("loglikelihood"))
    log(
        f"(b) particle: {task}, {ours.samples} documents, {requests} requests, "
        f"{distinct} distinct inputs, batch {bs}, layer {layer} of {n}, alpha {alpha}"
    )
    outcomes: dict[str, Any] = {}

    def evaluate(fitness: Any, name: str, setting: list[Any]) -> Any:
        def go() -> None:
            outcomes[name] = fitness.evaluate(setting)

        return go

    def run_prototype() -> None:
        manager = TaskManager(include_path=str(TASKS))
        lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=1)
        # lm-eval's progress bars (not affected by TQDM_DISABLE) would bury ours.
        with steerer.applied(vectors), contextlib.redirect_stderr(io.StringIO()):
            results = simple_evaluate(model=lm, tasks=[task], task_manager=manager, limit=limit)
        assert results is not None
        outcomes["prototype"] = float(results["results"][task][ours.metric_key])

    def run_floor() -> None:
        with steerer.applied(vectors), torch.no_grad():
            for ids in batches:
                model(ids)

    variants: dict[str, Any] = {}
    if prototype:
        variants["prototype"] = run_prototype
    variants["ours"] = evaluate(ours, "ours", vectors)
    scaling = [s for s in scaling_layers if s != layer] if cached else []
    for other in scaling:
        variants[f"ours at layer {other}"] = evaluate(
            ours, f"ours at layer {other}", [bench.vector(other, alpha)]
        )
    if cached:
        variants["every layer"] = evaluate(every, "every layer", vectors)
        variants["lm-eval scoring"] = evaluate(lm_eval_path, "lm-eval scoring", vectors)
    variants["floor"] = run_floor
    # The prototype's first run is its real cost (it rebuilds everything).
    timings = interleaved(variants, rounds, warmup_skip=("prototype",))

    def row(label: str, num: str, den: str, target: float | None, at_least: bool) -> list[str]:
        r = ratio(timings[num], timings[den])
        figures[f"{num} / {den}"] = r
        goal = "" if target is None else (">= " if at_least else "<= ") + f"{target:.2f}"
        ok = "" if target is None else met(r.median, target, at_least)
        return [label, r.cell(), f"{r.cpu_median:.2f}", f"{r.best:.2f}", goal, ok]

    figures: dict[str, Any] = {}
    rows: list[list[str]] = []
    if prototype:
        rows.append(row("prototype / ours (speed-up)", "prototype", "ours", SPEEDUP_TARGET, True))
    rows.append(row("ours / floor", "ours", "floor", FLOOR_TARGET, False))
    if cached:
        rows.append(row("every layer / floor", "every layer", "floor", None, False))
        rows.append(row("lm-eval scoring / floor", "lm-eval scoring", "floor", None, False))
    medians = ", ".join(f"{name} {t.median:.2f} s" for name, t in timings.items())
    markdown = (
        "### (b) One particle evaluation\n\n"
        f"{task}, {ours.samples} documents ({requests} loglikelihood requests, {distinct} "
        f"distinct model inputs in {len(batches)} batches), one vector at layer {layer} of "
        f"{n}, alpha {alpha:g}, batch size {bs} (filled to {min_tokens} tokens), "
        f"{rounds} interleaved rounds. Medians: {medians}. Building our "
        f"fitness (once per run): {build_seconds:.2f} s.\n\n"
        + table(
            ["figure", "median (range)", "CPU-time ratio", "fastest rounds", "target", "met"],
            rows,
        )
    )
    payload: dict[str, Any] = {
        "task": task,
        "documents": ours.samples,
        "requests": requests,
        "distinct_inputs": distinct,
        "batch_size": bs,
        "layer": layer,
        "num_layers": n,
        "alpha": alpha,
        "rounds": rounds,
        "fitness_build_seconds": build_seconds,
        "timings": timings,
        "ratios": figures,
    }
    if cached:
        scorer = ours.prefix_scorer
        payload["prefix_store"] = {
            "stored_layers": scorer.stored_layers,
            "bytes": scorer.stored_bytes,
            "scorer_rows": scorer.rows,
            "scorer_batches": len(scorer.batches),
        }
        payload["agreement"] = _agreement(outcomes, prototype)
        scale_rows = []
        for other in sorted({layer, *scaling}):
            name = "ours" if other == layer else f"ours at layer {other}"
            target = (n - other) / n + CACHE_SLACK
            cells = row(f"L = {other}", name, "every layer", target, False)
            if prototype:
                speedup = ratio(timings["prototype"], timings[name])
                figures[f"prototype / {name}"] = speedup
                cells.append(speedup.cell(1))
            scale_rows.append(cells)
        headers = ["particle", "cached / every layer, median (range)", "CPU-time ratio"]
        headers += ["fastest rounds", "target", "met"]
        headers += ["speed-up over the prototype"] if prototype else []
        markdown += (
            f"\n\nPrefix cache: a particle steering at layer L of {n} against every layer "
            f"run (target (N-L)/N + {CACHE_SLACK:g}).\n\n" + table(headers, scale_rows)
        )
        agree = payload["agreement"]
        markdown += (
            f"\n\nScores: ours {agree['score']:.3f}"
            + (f", prototype {agree['prototype']:.3f}" if prototype else "")
            + f"; largest per-request loglikelihood difference from lm-eval's scoring "
            f"{agree['max_abs_loglikelihood_difference']:.2e}."
        )
    payload["markdown"] = markdown
    return payload


def _agreement(outcomes: dict[str, Any], prototype: bool) -> dict[str, Any]:
    ours, reference = outcomes["ours"], outcomes["lm-eval scoring"]
    diffs = [
        abs(a[0] - b[0]) for a, b in zip(ours.responses, reference.responses, strict=True)
    ]
    greedy_equal = all(
        a[1] == b[1] for a, b in zip(ours.responses, reference.responses, strict=True)
    )
    out = {
        "score": ours.score,
        "lm_eval_score": reference.score,
        "max_abs_loglikelihood_difference": max(diffs),
        "is_greedy_equal": greedy_equal,
    }
    if prototype:
        out["prototype"] = outcomes["prototype"]
    return out
