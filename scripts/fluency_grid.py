"""Within the KL budget but looping? The fluency check on the shipped vectors.

For three vectors (the sentiment preset's prompts, mean difference; task-pair
vectors from 20 documents of `steer_sentiment` and of `steer_health`, as
`tests/test_vectors.py` builds them), each captured at a grid of layers and
set to a grid of strengths inside the default search bounds (unit strength,
-0.4..0.4), this records the KL guard's figure (its default neutral set) and
greedy replies to the fluency prompts (`tasks/neutral/prompts.txt`), then
applies `steering.fluency`'s rule twice: at the check's own limit
(`DEFAULT_FLUENCY_TOKENS`) and at a longer one (`--long`, 128 tokens, more
like a chat reply), from one generation (greedy replies are prefix-stable).
The question it answers: how often is a setting within the KL budget still
looping, and does the check see it.

    OMP_NUM_THREADS=1 python scripts/fluency_grid.py --out fluency-grid.json
    python scripts/fluency_grid.py --table-from fluency-grid.json

It loads the model and runs for minutes: not a test.
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

KL_BUDGET = 0.5  # the default budget (optimize/config/table.py)


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--layers", default="3,8,13,18,23")
    p.add_argument("--strengths", default="-0.4,-0.2,0.1,0.2,0.3,0.4")
    p.add_argument("--vectors", default="preset,sentiment pairs,health pairs")
    p.add_argument("--docs", type=int, default=20, help="documents a task-pair vector is built from")
    p.add_argument("--long", type=int, default=128, help="the longer reply limit")
    p.add_argument("--out", default="fluency-grid.json")
    p.add_argument("--table-from", metavar="JSON", help="only print the tables of a saved run")
    return p.parse_args()


def _sources(names: list[str], docs: int) -> dict[str, Any]:
    from steering.extract import VectorSource
    from steering.lm_eval_tasks import task_source
    from presets import load_preset

    preset = load_preset("sentiment")
    tasks = str(ROOT / "tasks")
    known = {
        "preset": lambda: VectorSource.from_prompts(list(preset.concept), list(preset.contrast)),
        "sentiment pairs": lambda: task_source("steer_sentiment", tasks, docs, 0),
        "health pairs": lambda: task_source("steer_health", tasks, docs, 0),
    }
    return {name: known[name]() for name in names}


def measure(args: argparse.Namespace) -> dict[str, Any]:
    import os

    from optimize.guard.kl import KlGuard
    from steering import steerer_for
    from steering.capture import capture
    from steering.fluency import (
        DEFAULT_FLUENCY_TOKENS,
        FluencyReference,
        fluency_prompts,
        judge,
        repeated_4grams,
        steered_reply_ids,
    )
    from steering.models import load_model

    loaded = load_model()
    steerer = steerer_for(loaded.model, loaded.tokenizer, loaded.name)
    steerer.reset()
    decode = loaded.tokenizer.decode
    prompts = fluency_prompts()
    layers = [int(x) for x in args.layers.split(",")]
    strengths = [float(x) for x in args.strengths.split(",")]
    horizons = {"check": DEFAULT_FLUENCY_TOKENS, "long": args.long}

    def texts(ids: tuple[tuple[int, ...], ...], limit: int) -> list[str]:
        return [decode(list(reply[:limit]), skip_special_tokens=True) for reply in ids]

    t0 = time.process_time()
    unsteered = steered_reply_ids(steerer, [[]], prompts, args.long)[0]
    references = {
        name: FluencyReference(
            loaded.name, prompts, limit, tuple(texts(unsteered, limit)),
            tuple(repeated_4grams(t) for t in texts(unsteered, limit)),
        )
        for name, limit in horizons.items()
    }  # fmt: skip
    print(f"unsteered replies: {time.process_time() - t0:.1f} CPU s", flush=True)
    settings, rows = [], []
    for name, source in _sources(args.vectors.split(","), args.docs).items():
        for layer in layers:
            vector = capture(steerer, source, layer, 1.0)
            for strength in strengths:
                moved = vector.with_strength(strength)
                settings.append([moved])
                rows.append({"vector": name, "layer": layer, "strength": strength,
                             "alpha": moved.alpha})  # fmt: skip
    t0 = time.process_time()
    guard = KlGuard(steerer)
    for row, outcome in zip(rows, guard.evaluate_many(settings), strict=True):
        row["kl"] = outcome.kl
    kl_cpu = time.process_time() - t0
    print(f"KL of {len(rows)} settings ({guard.sentences} sentences): {kl_cpu:.0f} CPU s",
          flush=True)  # fmt: skip
    t0 = time.process_time()
    replies = steered_reply_ids(steerer, settings, prompts, args.long)
    gen_cpu = time.process_time() - t0
    print(f"replies of {len(rows)} settings: {gen_cpu:.0f} CPU s", flush=True)
    for row, ids in zip(rows, replies, strict=True):
        for horizon, limit in horizons.items():
            check = judge(texts(ids, limit), references[horizon])
            row[horizon] = {
                "loops": check.loops, "share": check.share, "reason": check.reason,
                "shares": [r.share for r in check.replies],
            }  # fmt: skip
        row["texts"] = texts(ids, args.long)
        print(f"{row['vector']:>15} layer {row['layer']:>2} strength {row['strength']:+.1f}: "
              f"KL {row['kl']:.3f}  check {row['check']['share']:.2f}"
              f"{' LOOP' if row['check']['loops'] else ''}  long {row['long']['share']:.2f}"
              f"{' LOOP' if row['long']['loops'] else ''}", flush=True)  # fmt: skip
    return {
        "args": vars(args),
        "model": loaded.name,
        "load_average": os.getloadavg(),
        "kl_sentences": guard.sentences,
        "cpu_seconds": {"kl": kl_cpu, "replies": gen_cpu},
        "unsteered": {h: {"texts": list(r.texts), "shares": list(r.shares)}
                      for h, r in references.items()},  # fmt: skip
        "rows": rows,
    }


def tables(saved: dict[str, Any]) -> str:
    """The summary table and the per-setting table of docs/guard.md."""
    rows = saved["rows"]
    inside = [r for r in rows if r["kl"] <= KL_BUDGET]
    lines = [
        "| vector | settings | within KL 0.5 | of those, loop at 128 tokens | caught by the check "
        "| check flags, not looping at 128 | outside KL 0.5, loop at 128 |",
        "|---|--:|--:|--:|--:|--:|--:|",
    ]
    for name in [*dict.fromkeys(r["vector"] for r in rows), "all"]:
        part = [r for r in rows if name in ("all", r["vector"])]
        within = [r for r in part if r["kl"] <= KL_BUDGET]
        looping = [r for r in within if r["long"]["loops"]]
        caught = [r for r in looping if r["check"]["loops"]]
        false = [r for r in within if r["check"]["loops"] and not r["long"]["loops"]]
        outside = [r for r in part if r["kl"] > KL_BUDGET]
        lines.append(
            f"| {name} | {len(part)} | {len(within)} | {len(looping)} | {len(caught)} "
            f"| {len(false)} | {sum(r['long']['loops'] for r in outside)} of {len(outside)} |"
        )
    lines += [
        "",
        "| vector | layer | strength | alpha | KL | repeated share at 64 / 128 tokens "
        "| check | loops at 128 |",
        "|---|--:|--:|--:|--:|--:|---|---|",
    ]
    for r in sorted(inside, key=lambda r: -r["long"]["share"]):
        lines.append(
            f"| {r['vector']} | {r['layer']} | {r['strength']:+.1f} | {r['alpha']:+.2f} "
            f"| {r['kl']:.3f} | {r['check']['share']:.2f} / {r['long']['share']:.2f} "
            f"| {'loops' if r['check']['loops'] else 'fluent'} "
            f"| {'yes' if r['long']['loops'] else 'no'} |"
        )
    return "\n".join(lines)


def main() -> None:
    args = _args()
    if args.table_from:
        print(tables(json.loads(Path(args.table_from).read_text())))
        return
    saved = measure(args)
    Path(args.out).write_text(json.dumps(saved, indent=1))
    print(tables(saved))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
