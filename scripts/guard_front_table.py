"""The capability guard's measurements (docs/guard.md): does a search's gain
hold on documents it never saw, and what does it cost elsewhere? On the
shipped tasks and the demo.

For each run: the guarded objective (KL budget 0.5) searches layer and alpha
with PSO on the searched documents; then the unsteered baseline, the
recommended setting and the target-only best are scored on held-out
documents with the paired sign test. Reported per setting: search gain,
held-out gain with its p-value, KL on neutral text, the guard task's drop
(where one is used) and a greedy chat reply.

Runs (small sizes: CPU was shared by six jobs on 2 cores):
- sentiment: `steer_sentiment`, the sentiment preset's vector, the first
  --limit documents split 50/50 (seed 0); guard task `steer_health`.
- health: `steer_health`, a `task_pairs` vector built from --health-docs of
  its own documents (never scored), split 50/50; guard task `steer_sentiment`.
- demo: the documented demo (docs/demo.md): `sentiment_search` searched,
  `sentiment_heldout` held out (a task of other documents), the preset's
  vector and search space; KL guard only.

    OMP_NUM_THREADS=1 python scripts/guard_front_table.py --out guard-front.jsonl

Writes one JSON object per run (JSON lines) and prints a Markdown table.
Loads the model and runs for tens of minutes: not a test.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
TASKS = str(ROOT / "tasks")
PROMPT = "Describe your morning in two sentences."


def _run(steerer: Any, name: str, args: argparse.Namespace) -> dict[str, Any]:
    from optimize import FitnessConfig, PsoConfig, SearchSpace, run_optimization
    from optimize.guard.kl import GuardedFitness, KlGuard
    from optimize.guard.objective import ObjectiveOptions
    from optimize.guard.split import HELDOUT, SEARCH, DocumentSplit
    from optimize.run.optimization import RunPlan
    from optimize.scoring.fitness import LmEvalFitness
    from presets import load_preset
    from steering import capture_vector
    from steering.capture import capture
    from steering.neutral import neutral_sentences

    preset = load_preset("sentiment")
    space = SearchSpace(
        preset.optimize["layer_min"], preset.optimize["layer_max"],
        preset.optimize["alpha_min"], preset.optimize["alpha_max"],
    )
    heldout = None
    guard_task: str | None
    if name == "health":
        from steering.lm_eval_tasks import task_source

        source = task_source("steer_health", TASKS, args.health_docs, 0)
        vector = capture(steerer, source, preset.layer, preset.alpha)
        task, guard_task = "steer_health", "steer_sentiment"
    else:
        vector = capture_vector(
            steerer, preset.concept, preset.layer, preset.alpha, preset.contrast
        )
        task, guard_task = ("steer_sentiment", "steer_health") if name == "sentiment" else (
            "sentiment_search", None)
    if name == "demo":
        fitness = FitnessConfig(task, TASKS, "acc", args.limit // 2, args.batch_size)
        heldout = FitnessConfig("sentiment_heldout", TASKS, "acc", args.limit, args.batch_size)
    else:
        fitness = FitnessConfig(task, TASKS, "acc", args.limit, args.batch_size)
    # The guard task is added below with its own (smaller) limit; the CLI and
    # the tab score it with the search task's limit.
    # The measurement this table was made with: half the documents held out,
    # the search on the rest, no confirmation documents (docs/guard.md).
    split = None if heldout is not None else DocumentSplit(0.5, args.seed)
    steerer.set_vectors([vector])
    started = time.perf_counter()
    texts = neutral_sentences(count=args.sentences)
    guard_fitness = None
    if guard_task is not None:
        config = FitnessConfig(guard_task, TASKS, "acc", args.guard_limit, args.batch_size)
        guard_fitness = LmEvalFitness(steerer, config)
    scored = GuardedFitness(
        LmEvalFitness(steerer, fitness, split=split, side=SEARCH),
        KlGuard(steerer, texts, batch_size=args.batch_size),
        guard_fitness,
    )
    held = (
        LmEvalFitness(steerer, heldout)
        if heldout is not None
        else LmEvalFitness(steerer, fitness, split=split, side=HELDOUT)
    )
    pso = PsoConfig(particles=args.particles, iterations=args.iterations, seed=args.seed)
    plan = RunPlan(
        scored, space, pso, heldout=held, objective="guarded",
        options=ObjectiveOptions(kl_budget=args.kl_budget),
    )
    result = run_optimization(
        steerer, [0], plan,
        on_progress=lambda p: print(f"[guard-front] {name}: {p.done}/{p.total}", file=sys.stderr,
                                    flush=True),
    )
    seconds = time.perf_counter() - started
    result.save(Path(args.results) / f"guard-front-{name}.json")
    return _row(steerer, name, result, seconds, args)


def _setting(steerer: Any, result: Any, evaluation: Any, held: Any, paired: Any, tokens: int):
    from optimize import apply_best
    from optimize.guard.objective import GUARD_DROP, KL
    from steering.generate import GenerationSettings, reply

    original = steerer.vectors
    apply_best(steerer, result, evaluation)
    try:
        text = reply(steerer.model, steerer.tokenizer, [{"role": "user", "content": PROMPT}],
                     GenerationSettings(max_new_tokens=tokens))
    finally:
        steerer.set_vectors(original)
    return {
        "layer": evaluation.layers[0],
        "alpha": evaluation.alphas[0],
        "search_score": evaluation.score,
        "search_gain_points": 100.0 * (evaluation.score - result.baseline.score),
        "heldout_score": None if held is None else held.score,
        "heldout_gain_points": None if paired is None else paired.gain_points,
        "heldout_stderr_points": None if paired is None else paired.stderr_points,
        "fixed": None if paired is None else paired.fixed,
        "broken": None if paired is None else paired.broken,
        "p_value": None if paired is None else paired.p_value,
        "kl": evaluation.metrics.get(KL, math.nan),
        "guard_drop_points": evaluation.metrics.get(GUARD_DROP, math.nan),
        "reply": text,
    }


def _row(steerer: Any, name: str, result: Any, seconds: float, args: argparse.Namespace):
    from steering.generate import GenerationSettings, reply

    held = result.heldout
    with steerer.unsteered():
        plain = reply(steerer.model, steerer.tokenizer, [{"role": "user", "content": PROMPT}],
                      GenerationSettings(max_new_tokens=args.tokens))
    # this run had no confirmation documents: its candidate is the search's best
    recommended = result.verdict.candidate
    target_only = result.target_only_best
    row: dict[str, Any] = {
        "run": name,
        "task": result.fitness.task,
        "searched_documents": result.samples,
        "heldout": None if held is None else held.documents or held.fitness.task,
        "heldout_documents": None if held is None else held.samples,
        "evaluations": len(result.evaluations),
        "baseline_search": result.baseline.score,
        "baseline_heldout": None if held is None else held.baseline.score,
        "recommendation": result.verdict.headline,
        "front_size": len(result.front),
        "wall_seconds": seconds,
        "unsteered_reply": plain,
        "recommended": None,
        "target_only": None,
    }
    if held is not None and recommended is not None:
        row["recommended"] = _setting(steerer, result, result.best, held.best, held.paired,
                                      args.tokens)
    if held is not None:
        same = target_only.setting.key == result.best.setting.key
        row["target_only"] = _setting(
            steerer, result, target_only, held.best if same else held.target_only,
            held.paired if same else held.target_only_paired, args.tokens,
        )
        row["target_only"]["same_as_recommended"] = same
    return row


def _cell(value: Any, fmt: str) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else format(
        value, fmt)


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        ("| run | setting | layer | alpha | search gain | held-out gain (± se) | fixed/broken"
         " | p | KL | guard drop | reply begins |"),
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    for row in rows:
        for which in ("recommended", "target_only"):
            s = row[which]
            if s is None:
                lines.append(f"| {row['run']} | {which} | none: {row['recommendation']} |"
                             " | | | | | | | |")
                continue
            lines.append(
                f"| {row['run']} | {which} | {s['layer']} | {s['alpha']:g} | "
                f"{s['search_gain_points']:+.1f} | {_cell(s['heldout_gain_points'], '+.1f')} "
                f"(± {_cell(s['heldout_stderr_points'], '.1f')}) | {s['fixed']}/{s['broken']} | "
                f"{_cell(s['p_value'], '.3g')} | {s['kl']:.3f} | "
                f"{_cell(s['guard_drop_points'], '+.1f')} | {s['reply'][:70]!r} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="sentiment,health,demo")
    parser.add_argument("--limit", type=int, default=40, help="documents split 50/50")
    parser.add_argument("--guard-limit", type=int, default=20)
    parser.add_argument("--health-docs", type=int, default=20)
    parser.add_argument("--particles", type=int, default=4)
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--kl-budget", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tokens", type=int, default=40)
    parser.add_argument("--sentences", type=int, default=None,
                        help="neutral sentences the KL guard scores (default: the guard's 100)")
    parser.add_argument("--results", default=str(ROOT / "bench" / "results"))
    parser.add_argument("--out", default="guard-front.jsonl")
    args = parser.parse_args()

    from steering import load_model, steerer_for

    Path(args.results).mkdir(parents=True, exist_ok=True)
    loaded = load_model(None)
    steerer = steerer_for(loaded.model, loaded.tokenizer, loaded.name)
    rows = []
    for name in args.runs.split(","):
        print(f"[guard-front] {name} ...", file=sys.stderr, flush=True)
        row = _run(steerer, name, args)
        rows.append(row)
        with open(args.out, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")
        print(f"[guard-front] {name}: {row['wall_seconds']:.0f} s", file=sys.stderr, flush=True)
    print(table(rows))


if __name__ == "__main__":
    main()
