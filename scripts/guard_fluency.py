"""How the KL guard's number relates to fluent text, on the embedded SmolLM2.

For a vector at several layers and alphas: the guard's mean KL over the
neutral set, and greedy chat replies to a few everyday prompts with two
fluency measures: the fraction of repeated word 4-grams (0 for text that
never repeats itself; a looping reply approaches 1) and VADER's compound
polarity. Writes one JSON object per setting (JSON lines) and prints a table.

    OMP_NUM_THREADS=1 python scripts/guard_fluency.py --out guard-fluency.jsonl

This measured the default KL budget (`optimize.guard.kl.DEFAULT_KL_BUDGET`,
docs/guard.md). It loads the model and runs for minutes: not a test.
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

from steering.fluency import repeated_4grams

PROMPTS = (
    "Describe how to make a cup of tea.",
    "What should I pack for a weekend trip?",
    "Write two sentences about the weather today.",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", default="3,7,12,20")
    parser.add_argument("--alphas", default="1,2,3,4,6,8")
    parser.add_argument("--tokens", type=int, default=48)
    parser.add_argument("--all-sentences-at", default="7:2,7:4,20:4",
                        help="layer:alpha settings also scored on all 310 sentences")
    parser.add_argument("--out", default="guard-fluency.jsonl")
    args = parser.parse_args()

    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    from optimize.guard.kl import KlGuard
    from steering import capture_vector, steerer_for
    from steering.generate import GenerationSettings, reply
    from steering.models import load_model
    from steering.neutral import neutral_sentences

    loaded = load_model()
    steerer = steerer_for(loaded.model, loaded.tokenizer, loaded.name)
    concept = (ROOT / "presets/sentiment/concept.txt").read_text().splitlines()
    contrast = (ROOT / "presets/sentiment/contrast.txt").read_text().splitlines()
    vader = SentimentIntensityAnalyzer()
    settings = GenerationSettings(max_new_tokens=args.tokens)
    t0 = time.perf_counter()
    guard = KlGuard(steerer)
    print(f"guard: {guard.sentences} sentences, {guard.positions} positions, "
          f"built in {time.perf_counter() - t0:.1f} s", flush=True)
    full = None
    extra = {tuple(float(x) for x in s.split(":")) for s in args.all_sentences_at.split(",") if s}
    if extra:
        full = KlGuard(steerer, neutral_sentences())

    def sample(vectors: list) -> dict:
        with steerer.applied(vectors):
            texts = [
                reply(loaded.model, loaded.tokenizer, [{"role": "user", "content": p}], settings)
                for p in PROMPTS
            ]
        return {
            "texts": texts,
            "repeated_4grams": sum(map(repeated_4grams, texts)) / len(texts),
            "vader": sum(vader.polarity_scores(t)["compound"] for t in texts) / len(texts),
        }

    rows = [{"layer": None, "alpha": 0.0, "kl": 0.0, **sample([])}]
    for layer in (int(x) for x in args.layers.split(",")):
        vector = capture_vector(steerer, concept, layer, 1.0, contrast)
        for alpha in (float(x) for x in args.alphas.split(",")):
            vectors = [vector.with_alpha(alpha)]
            t0 = time.perf_counter()
            row: dict[str, Any] = {"layer": layer, "alpha": alpha,
                                   "kl": guard.evaluate(vectors).kl,
                                   "kl_seconds": time.perf_counter() - t0}
            if full is not None and (layer, alpha) in extra:
                row["kl_all_310"] = full.evaluate(vectors).kl
            row.update(sample(vectors))
            rows.append(row)
            print(f"layer {layer:>2} alpha {alpha:>4}: KL {row['kl']:.3f}  "
                  f"rep4 {row['repeated_4grams']:.2f}  vader {row['vader']:+.2f}  "
                  f"| {row['texts'][0][:90]!r}", flush=True)
    Path(args.out).write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
