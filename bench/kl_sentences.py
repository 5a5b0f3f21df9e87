"""(j) How many neutral sentences does the KL guard need?

The guard scores every setting on a subset of the 310 neutral sentences
(`optimize.guard.kl.DEFAULT_GUARD_SENTENCES`, evenly spaced), a large share
of a setting's cost. Fewer sentences cost less but estimate the KL less
well, and the estimate decides on which side of the budget (0.5 nats/token
by default) a setting falls. This measures the error against the size.

Settings: four vectors (the sentiment preset's prompts; the joy/grief
sentences of docs/vectors.md; task-pair vectors from 20 documents of
`steer_sentiment` and of `steer_health`), each captured at a few layers, at
strengths chosen to put the full-set KL near the budget: a pilot on 30
sentences at strength +-0.3 and KL growing as the strength squared give the
strengths aimed at `TARGETS`; settings whose full-set KL lands outside
0.2-1.0 nats/token are left out. For each setting one pass gives the KL of
every sentence (`KlGuard.sentence_kls_many`), so the KL of any subset is its
positions-weighted mean, exactly what a guard built on it measures. Against
the full set: the evenly spaced subset the code uses and `draws` random
subsets of each size, as relative errors (estimate / full - 1). At the
budget, a relative error of 10 % is 0.05 nats.
"""

from __future__ import annotations

import functools
import math
import statistics
import time
from typing import Any

import torch

from bench._common import TASKS, Bench, log, table

SIZES = (10, 20, 30, 50, 75, 100, 150)
TARGETS = ((+1, 0.35), (+1, 0.7), (-1, 0.5))  # (sign of the strength, aimed full-set KL)
LAYERS = (3, 9, 15, 21)
KL_RANGE = (0.2, 1.0)
# The criterion: a relative error within TOLERANCE in at least COVERAGE of cases.
TOLERANCE = 0.10
COVERAGE = 0.95
PILOT_SENTENCES = 30
PILOT_STRENGTH = 0.3


def _sources(docs: int) -> dict[str, Any]:
    from presets import GRIEF, JOY, load_preset
    from steering.extract import VectorSource
    from steering.lm_eval_tasks import task_source

    preset = load_preset("sentiment")
    return {
        "preset": VectorSource.from_prompts(preset.concept, preset.contrast),
        "joy/grief": VectorSource.from_prompts(JOY, GRIEF),
        "sentiment pairs": task_source("steer_sentiment", str(TASKS), docs, 0),
        "health pairs": task_source("steer_health", str(TASKS), docs, 0),
    }


def _settings(bench: Bench, layers: tuple[int, ...], docs: int) -> list[dict[str, Any]]:
    """Settings aimed at the targets by a pilot on PILOT_SENTENCES sentences."""
    from optimize.guard.kl import KlGuard
    from steering.capture import capture
    from steering.neutral import neutral_sentences

    steerer = bench.steerer
    pilot = KlGuard(steerer, neutral_sentences(count=PILOT_SENTENCES))
    candidates = []
    for name, source in _sources(docs).items():
        for layer in layers:
            vector = capture(steerer, source, layer, 1.0)
            signs = sorted({sign for sign, _ in TARGETS})
            trial = [[vector.with_strength(sign * PILOT_STRENGTH)] for sign in signs]
            pilot_kl = dict(zip(signs, (o.kl for o in pilot.evaluate_many(trial)), strict=True))
            for sign, target in TARGETS:
                if pilot_kl[sign] <= 0:
                    continue
                strength = sign * PILOT_STRENGTH * math.sqrt(target / pilot_kl[sign])
                candidates.append({
                    "vector": name, "layer": layer, "strength": strength,
                    "setting": [vector.with_strength(strength)], "aimed": target,
                })
    log(f"(j) {len(candidates)} settings aimed at KL {[t for _, t in TARGETS]}")
    return candidates


def _relative(totals: torch.Tensor, positions: torch.Tensor, index: torch.Tensor) -> float:
    full = float(totals.sum() / positions.sum())
    return float(totals[index].sum() / positions[index].sum()) / full - 1.0


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def _cost_ratio(
    bench: Bench, setting: Any, small: int, default: int, rounds: int = 3
) -> dict[str, Any]:
    """CPU of one setting's KL pass on `small` sentences over that on
    `default`, timed side by side (bench._common.interleaved)."""
    from bench._common import interleaved, ratio
    from optimize.guard.kl import KlGuard
    from steering.neutral import neutral_sentences

    if setting is None or small == default:
        return {"line": ""}
    guards = {n: KlGuard(bench.steerer, neutral_sentences(count=n)) for n in (small, default)}
    timings = interleaved(
        {str(n): functools.partial(guard.evaluate, setting) for n, guard in guards.items()}, rounds
    )
    r = ratio(timings[str(small)], timings[str(default)])
    line = (
        f"One setting's KL pass on {small} sentences ({guards[small].positions} positions) "
        f"took {r.cpu_median:.2f}x the CPU time of {default} ({guards[default].positions}), "
        f"median of {rounds} interleaved rounds."
    )
    return {"line": line, "ratio": r.to_dict(), "positions": {
        str(n): g.positions for n, g in guards.items()}}


def run(
    bench: Bench,
    layers: tuple[int, ...] = LAYERS,
    draws: int = 1000,
    docs: int = 20,
    seed: int = 0,
) -> dict[str, Any]:
    from optimize.guard.kl import DEFAULT_GUARD_SENTENCES, KlGuard
    from steering.neutral import neutral_sentences

    steerer = bench.steerer
    layers = tuple(layer for layer in layers if layer < bench.num_layers)
    candidates = _settings(bench, layers, docs)
    sentences = neutral_sentences()
    total = len(sentences)
    t0 = time.process_time()
    guard = KlGuard(steerer, sentences)
    build_cpu = time.process_time() - t0
    t0 = time.process_time()
    per_sentence = guard.sentence_kls_many([c["setting"] for c in candidates])
    pass_cpu = (time.process_time() - t0) / max(1, len(candidates))
    positions = guard.sentence_positions
    log(f"(j) full set: {total} sentences, {int(positions.sum())} positions; "
        f"{pass_cpu:.1f} CPU s per setting")
    settings = []
    for candidate, totals in zip(candidates, per_sentence, strict=True):
        kl = float(totals.sum() / positions.sum())
        if KL_RANGE[0] <= kl <= KL_RANGE[1]:
            settings.append({**{k: v for k, v in candidate.items() if k != "setting"},
                             "vector_setting": candidate["setting"], "kl": kl,
                             "totals": totals})
    log(f"(j) {len(settings)} of {len(candidates)} settings have a full-set KL in {KL_RANGE}")
    generator = torch.Generator().manual_seed(seed)
    sizes = [n for n in SIZES if n < total]
    rows: list[list[Any]] = []
    per_size: dict[int, dict[str, Any]] = {}
    for n in sizes:
        spaced = torch.tensor([i * total // n for i in range(n)])
        even = [_relative(s["totals"], positions, spaced) for s in settings]
        drawn = []
        misjudged = 0
        for s in settings:
            for _ in range(draws):
                index = torch.randperm(total, generator=generator)[:n]
                error = _relative(s["totals"], positions, index)
                drawn.append(error)
                misjudged += (s["kl"] * (1 + error) > 0.5) != (s["kl"] > 0.5)
        share_within = sum(abs(e) < TOLERANCE for e in drawn) / len(drawn)
        even_within = sum(abs(e) < TOLERANCE for e in even) / len(even)
        per_size[n] = {
            "evenly_spaced": even, "random_within": share_within, "even_within": even_within,
            "random_p95_abs": _quantile([abs(e) for e in drawn], 0.95),
            "random_sd": statistics.pstdev(drawn), "misjudged": misjudged / len(drawn),
            "positions": int(positions[spaced].sum()),
        }
        meets = share_within >= COVERAGE and even_within >= COVERAGE
        rows.append([
            n, per_size[n]["positions"], f"{max(abs(e) for e in even):.1%}",
            f"{statistics.fmean(abs(e) for e in even):.1%}",
            f"{per_size[n]['random_p95_abs']:.1%}", f"{share_within:.1%}",
            f"{per_size[n]['misjudged']:.1%}", "yes" if meets else "no",
        ])
    chosen = next((n for n in sizes if per_size[n]["random_within"] >= COVERAGE
                   and per_size[n]["even_within"] >= COVERAGE), total)
    cost = _cost_ratio(bench, settings[0]["vector_setting"] if settings else None, chosen,
                       DEFAULT_GUARD_SENTENCES)
    setting_rows = [
        [s["vector"], s["layer"], f"{s['strength']:+.2f}", f"{s['kl']:.3f}"]
        + [f"{per_size[n]['evenly_spaced'][i]:+.1%}" for n in sizes]
        for i, s in enumerate(settings)
    ]
    markdown = (
        "### (j) KL guard: error against the number of neutral sentences\n\n"
        f"{len(settings)} settings with a full-set ({total} sentences, "
        f"{int(positions.sum())} positions) KL in {KL_RANGE[0]}-{KL_RANGE[1]} nats/token; "
        f"relative error of the KL on n sentences against all {total}: the evenly spaced "
        f"subset the guard uses, and {draws} random subsets per setting (seed {seed}). "
        f"Misjudged: random subsets that put the setting on the other side of the budget 0.5. "
        f"Criterion: |error| < {TOLERANCE:.0%} (0.05 nats at the budget) in at least "
        f"{COVERAGE:.0%} of random subsets and of settings' evenly spaced subsets.\n\n"
        + table(
            ["n", "positions (evenly spaced)", "evenly spaced: largest |error|", "mean |error|",
             "random: 95th percentile |error|", f"random: |error| < {TOLERANCE:.0%}",
             "misjudged", "meets"],
            rows,
        )
        + f"\n\nSmallest n meeting the criterion: **{chosen}** (the default now: "
        f"{DEFAULT_GUARD_SENTENCES}). Full-set pass: {pass_cpu:.1f} CPU s per setting, "
        f"reference {build_cpu:.1f} CPU s. {cost['line']}\n\n"
        + table(
            ["vector", "layer", "strength", "full-set KL", *(f"n={n}" for n in sizes)],
            setting_rows,
        )
    )
    return {
        "markdown": markdown,
        "chosen": chosen,
        "sizes": per_size,
        "settings": [
            {k: v for k, v in s.items() if k not in ("totals", "vector_setting")}
            | {"sentence_kl": s["totals"].tolist()} for s in settings
        ],
        "cost": {k: v for k, v in cost.items() if k != "line"},
        "positions": positions.tolist(),
        "cpu_seconds": {"reference": build_cpu, "per_setting": pass_cpu},
    }
