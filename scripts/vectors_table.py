"""The measurement table of docs/vectors.md, on the embedded SmolLM2 (CPU, small sizes).

(a) Held-out gain of three vectors on the shipped sentiment and health tasks,
    each searched with the same budget and seed: a task-pair vector (answer
    tokens of documents reserved for building, never scored), the sentiment
    preset's hand-written prompts (mean_diff), and PCA of paired differences
    (pca_diff of the same prompts; on health, which has no preset, pca_diff of
    the reserved documents' question + right answer vs question + wrong answer).
    Every run has the task-pair vector active at alpha 0 (it steers nothing),
    so its build documents are left out of the scored ones in every run and
    all three are scored on the same documents.
(b) The joy/grief vector's greedy replies at strengths 0.25, 0.5 and 1 at two
    layers: the share of repeated word 4-grams and VADER's compound score
    (vaderSentiment, pinned in requirements/test.txt).
(c) What the concept-strength search recommends for the joy/grief vector
    (held-out half of its prompts, within the guard's KL budget, the tab's
    default strength range), and its reply.

    OMP_NUM_THREADS=1 python scripts/vectors_table.py --out vectors-table.json

Sizes are in the arguments and printed with the table. It runs for minutes
(the model loads once): not a test.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from presets import GRIEF, JOY
from scripts.guard_fluency import PROMPTS
from steering.fluency import repeated_4grams


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--docs", type=int, default=20, help="documents a task-pair vector is built from"
    )
    p.add_argument(
        "--limit", type=int, default=80,
        help="documents scored (of those not reserved for building), split half/half",
    )
    p.add_argument("--particles", type=int, default=4)
    p.add_argument("--iterations", type=int, default=3)
    p.add_argument("--layers", default="3,12", help="layer range searched in (a) and (c)")
    p.add_argument("--strength", default="-0.4,0.4", help="strength range searched in (a) and (c)")
    p.add_argument("--sample-layers", default="6,12", help="layers of the replies in (b)")
    p.add_argument("--tokens", type=int, default=40)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip", default="", help="comma list of parts to skip: a,b,c")
    p.add_argument("--out", default="vectors-table.json")
    p.add_argument("--table-from", metavar="JSON", help="only print the tables of a saved run")
    return p.parse_args()


def _run_task(steerer, args, task: str, vectors: dict, builder) -> list[dict]:
    """Part (a) for one task: each vector searched and scored held out."""
    from optimize import FitnessConfig, LmEvalFitness, PsoConfig, SearchSpace, run_optimization
    from optimize.guard.split import HELDOUT, SEARCH, DocumentSplit
    from optimize.run.optimization import RunPlan

    low, high = (int(x) for x in args.layers.split(","))
    s_low, s_high = (float(x) for x in args.strength.split(","))
    space = SearchSpace(low, high, unit="strength", strength_min=s_low, strength_max=s_high)
    pso = PsoConfig(particles=args.particles, iterations=args.iterations, seed=args.seed)
    config = FitnessConfig(task=task, include_path=str(ROOT / "tasks"), limit=args.limit)
    split = DocumentSplit(0.5, args.seed)
    rows = []
    for name, vector in vectors.items():
        # the task-pair vector is always active, at alpha 0 unless it is the one searched
        active = [vector] if vector is builder else [vector, builder.with_alpha(0.0)]
        steerer.set_vectors(active)
        t0 = time.perf_counter()
        plan = RunPlan(
            LmEvalFitness(steerer, config, split=split, side=SEARCH), space, pso,
            heldout=LmEvalFitness(steerer, config, split=split, side=HELDOUT),
        )
        result = run_optimization(steerer, [0], plan)
        held = result.heldout
        if held is None:
            raise SystemExit(f"{task}, {name}: the run ended before its held-out scores")
        best = result.best
        moved = steerer.vectors[0]
        from steering import recapture

        at = recapture(steerer, moved, best.layers[0]).with_alpha(best.alphas[0])
        rows.append({
            "task": task, "vector": name, "method": vector.method,
            "search_baseline": result.baseline.score, "search_best": best.score,
            "layer": best.layers[0], "alpha": best.alphas[0], "strength": at.strength,
            "heldout_baseline": held.baseline.score, "heldout_best": held.best.score,
            "heldout_gain": held.best.score - held.baseline.score,
            "search_docs": result.samples, "heldout_docs": held.samples,
            "seconds": time.perf_counter() - t0,
        })
        print(json.dumps(rows[-1]), flush=True)
    steerer.reset()
    return rows


def part_a(steerer, args) -> list[dict]:
    from steering.capture import capture
    from steering.extract import VectorSource
    from steering.lm_eval_tasks import task_source

    preset = [ln for ln in (ROOT / "presets/sentiment/concept.txt").read_text().splitlines() if ln]
    contra = [ln for ln in (ROOT / "presets/sentiment/contrast.txt").read_text().splitlines() if ln]
    layer = 8
    rows = []
    tasks = str(ROOT / "tasks")
    # sentiment
    source = task_source("sentiment_search", tasks, args.docs, args.seed)
    pairs = capture(steerer, source, layer, 1.0)
    vectors = {
        "task pairs": pairs,
        "preset prompts": capture(steerer, VectorSource.from_prompts(preset, contra), layer, 1.0),
        "PCA (preset pairs)": capture(
            steerer, VectorSource("pca_diff", {"prompts": preset, "contrast_prompts": contra}),
            layer, 1.0,
        ),
    }
    rows += _run_task(steerer, args, "sentiment_search", vectors, pairs)
    # health: no preset; PCA of the reserved documents' right vs wrong answers
    source = task_source("steer_health", tasks, args.docs, args.seed)
    pairs = capture(steerer, source, layer, 1.0)
    items = source.inputs["items"]
    right = [f"{context}{answer}" for context, answer, _wrong in items]
    wrong = [f"{context}{wrongs[0]}" for context, _answer, wrongs in items]
    vectors = {
        "task pairs": pairs,
        "PCA (task documents)": capture(
            steerer, VectorSource("pca_diff", {"prompts": right, "contrast_prompts": wrong}),
            layer, 1.0,
        ),
    }
    rows += _run_task(steerer, args, "steer_health", vectors, pairs)
    return rows


def _sample(steerer, loaded, vectors, settings, vader) -> dict:
    from steering.generate import reply

    with steerer.applied(vectors):
        texts = [
            reply(loaded.model, loaded.tokenizer, [{"role": "user", "content": p}], settings)
            for p in PROMPTS[:2]
        ]
    return {
        "texts": texts,
        "repeated_4grams": sum(map(repeated_4grams, texts)) / len(texts),
        "vader": sum(vader.polarity_scores(t)["compound"] for t in texts) / len(texts),
    }


def part_b(steerer, loaded, args, vader) -> list[dict]:
    from steering import capture_vector
    from steering.generate import GenerationSettings

    settings = GenerationSettings(max_new_tokens=args.tokens)
    rows = [{"layer": None, "strength": 0.0, **_sample(steerer, loaded, [], settings, vader)}]
    for layer in (int(x) for x in args.sample_layers.split(",")):
        vector = capture_vector(steerer, JOY, layer, 1.0, GRIEF)
        for strength in (0.25, 0.5, 1.0):
            moved = vector.with_strength(strength)
            row = {"layer": layer, "strength": strength, "alpha": moved.alpha,
                   **_sample(steerer, loaded, [moved], settings, vader)}
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "texts"}), flush=True)
    return rows


def part_c(steerer, loaded, args, vader) -> dict:
    from optimize import PsoConfig, SearchSpace, run_optimization
    from optimize.guard.kl import GuardedFitness, KlGuard
    from optimize.run.optimization import RunPlan
    from optimize.scoring.concept import concept_search
    from steering import capture_vector, recapture
    from steering.generate import GenerationSettings

    low, high = (int(x) for x in args.layers.split(","))
    steerer.set_vectors([capture_vector(steerer, JOY, 8, 1.0, GRIEF)])
    s_low, s_high = (float(x) for x in args.strength.split(","))  # the tab's default range
    space = SearchSpace(low, high, unit="strength", strength_min=s_low, strength_max=s_high)
    pso = PsoConfig(particles=args.particles, iterations=args.iterations, seed=args.seed)
    t0 = time.perf_counter()
    with concept_search(steerer, [0], 0.5, args.seed) as fitness:
        plan = RunPlan(GuardedFitness(fitness, KlGuard(steerer)), space, pso, objective="concept")
        result = run_optimization(steerer, [0], plan)
    best = result.best
    vector = recapture(steerer, steerer.vectors[0], best.layers[0]).with_alpha(best.alphas[0])
    settings = GenerationSettings(max_new_tokens=args.tokens)
    row = {
        "layer": best.layers[0], "alpha": best.alphas[0], "strength": vector.strength,
        "gain": best.metrics.target, "kl": best.metrics["kl"],
        # the best is recommended only within the KL budget and above the baseline
        "recommended": result.improved, "reason": result.verdict.headline,
        "evaluations": [
            {"layer": e.layers[0], "alpha": e.alphas[0], "gain": e.metrics.target,
             "kl": e.metrics["kl"]} for e in result.evaluations
        ],
        "seconds": time.perf_counter() - t0,
        **_sample(steerer, loaded, [vector], settings, vader),
    }
    steerer.reset()
    shown = {k: v for k, v in row.items() if k not in ("texts", "evaluations")}
    print(json.dumps(shown), flush=True)
    return row


def table_a(rows: list[dict]) -> str:
    """Part (a) as the Markdown table of docs/vectors.md."""
    lines = [
        ("| task | vector (method) | held-out baseline | best held-out | gain | layer "
         "| strength | alpha | beat the baseline in the search | docs searched + held out |"),
        "|---|---|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r in rows:
        # the run recommends a setting only when it beat the unsteered search score
        beat = "yes" if r["search_best"] > r["search_baseline"] else "no (nothing to apply)"
        lines.append(
            f"| {r['task']} | {r['vector']} ({r['method']}) | {r['heldout_baseline']:.3f} "
            f"| {r['heldout_best']:.3f} | {r['heldout_gain']:+.3f} | {r['layer']} "
            f"| {r['strength']:+.2f} | {r['alpha']:+.2f} | {beat} "
            f"| {r['search_docs']} + {r['heldout_docs']} |"
        )
    return "\n".join(lines)


def table_c(row: dict) -> str:
    """Part (c) as the Markdown table of docs/vectors.md, then the replies."""
    lines = [
        ("| layer | strength | alpha | held-out gain (nats/token) | KL | recommended "
         "| repeated 4-grams | VADER |"),
        "|---:|---:|---:|---:|---:|---|---:|---:|",
        (f"| {row['layer']} | {row['strength']:.2f} | {row['alpha']:.2f} | {row['gain']:+.3f} "
         f"| {row['kl']:.3f} | {'yes' if row['recommended'] else 'no'} "
         f"| {row['repeated_4grams']:.2f} | {row['vader']:+.2f} |"),
        "",
        f"Recommendation: {row['reason']}",
        "",
    ]
    replies = zip(PROMPTS, row["texts"], strict=False)  # replies to the first prompts only
    lines += [f"> {p}\n>\n> → {' '.join(t.split())}\n" for p, t in replies]
    return "\n".join(lines)


def main() -> None:
    args = _args()
    if args.table_from:
        saved = json.loads(Path(args.table_from).read_text())
        for key, table in (("concept_search", table_c), ("heldout", table_a)):
            if key in saved:
                print(table(saved[key]) + "\n")
        return
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    from steering import steerer_for
    from steering.models import load_model

    loaded = load_model()
    steerer = steerer_for(loaded.model, loaded.tokenizer, loaded.name)
    vader = SentimentIntensityAnalyzer()
    skip = set(args.skip.split(","))
    out: dict = {"args": vars(args)}
    if "b" not in skip:
        out["samples"] = part_b(steerer, loaded, args, vader)
    if "c" not in skip:
        out["concept_search"] = part_c(steerer, loaded, args, vader)
        print(table_c(out["concept_search"]), flush=True)
    if "a" not in skip:
        out["heldout"] = part_a(steerer, args)
        print(table_a(out["heldout"]), flush=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
