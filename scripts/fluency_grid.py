"""Within the KL budget but looping? The fluency check on the shipped vectors.

For three vectors (the sentiment preset's prompts, mean difference; task-pair
vectors from 20 documents of `steer_sentiment` and of `steer_health`, as
`tests/test_vectors.py` builds them), each captured at a grid of layers and
set to a grid of strengths inside the default search bounds (unit strength,
-0.4..0.4), this records the KL guard's figure (its default neutral set) and
greedy replies to the fluency prompts (`tasks/neutral/prompts.txt`), then
applies `steering.fluency`'s rule twice: at the check's own limit
(`DEFAULT_FLUENCY_TOKENS`, or `--check`) and at a longer one (`--long`, more
like a chat reply), from one generation (greedy replies are prefix-stable,
so the first k tokens are the reply a limit of k gives). The question it
answers: how often is a setting within the KL budget still looping, and
does the check see it.

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
    p.add_argument(
        "--docs", type=int, default=20, help="documents a task-pair vector is built from"
    )
    p.add_argument("--long", type=int, default=160, help="the longer reply limit")
    p.add_argument("--check", type=int, default=None,
                   help="the check's limit (default: DEFAULT_FLUENCY_TOKENS)")
    p.add_argument("--out", default="fluency-grid.json")
    p.add_argument("--table-from", metavar="JSON", help="only print the tables of a saved run")
    return p.parse_args()


def _sources(names: list[str], docs: int) -> dict[str, Any]:
    from presets import load_preset
    from steering.extract import VectorSource
    from steering.lm_eval_tasks import task_source

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
    from steering.fluency import fluency_prompts, steered_reply_ids
    from steering.models import load_model

    loaded = load_model()
    steerer = steerer_for(loaded.model, loaded.tokenizer, loaded.name)
    steerer.reset()
    prompts = fluency_prompts()
    layers = [int(x) for x in args.layers.split(",")]
    strengths = [float(x) for x in args.strengths.split(",")]
    t0 = time.process_time()
    unsteered = steered_reply_ids(steerer, [[]], prompts, args.long)[0]
    print(f"unsteered replies: {time.process_time() - t0:.1f} CPU s", flush=True)
    settings, rows = [], []
    for name, source in _sources(args.vectors.split(","), args.docs).items():
        for layer in layers:
            vector = capture(steerer, source, layer, 1.0)
            for strength in strengths:
                moved = vector.with_strength(strength)
                settings.append([moved])
                rows.append({"vector": name, "layer": layer, "strength": strength,
                             "alpha": moved.alpha})
    t0 = time.process_time()
    guard = KlGuard(steerer)
    for row, outcome in zip(rows, guard.evaluate_many(settings), strict=True):
        row["kl"] = outcome.kl
    kl_cpu = time.process_time() - t0
    print(f"KL of {len(rows)} settings ({guard.sentences} sentences): {kl_cpu:.0f} CPU s",
          flush=True)
    t0 = time.process_time()
    replies = steered_reply_ids(steerer, settings, prompts, args.long)
    gen_cpu = time.process_time() - t0
    print(f"replies of {len(rows)} settings: {gen_cpu:.0f} CPU s", flush=True)
    for row, ids in zip(rows, replies, strict=True):
        row["ids"] = [list(reply) for reply in ids]
    return {
        "args": vars(args),
        "model": loaded.name,
        "load_average": os.getloadavg(),
        "kl_sentences": guard.sentences,
        "cpu_seconds": {"kl": kl_cpu, "replies": gen_cpu},
        "prompts": list(prompts),
        "unsteered_ids": [list(reply) for reply in unsteered],
        "rows": rows,
    }


CHECK_LIMITS = (64, 96, 128)  # the check's limits compared


def judged(saved: dict[str, Any], limits: list[int]) -> list[dict[str, Any]]:
    """The saved rows, each with "verdicts": {limit: the fluency check of its
    replies cut to that many tokens}; the unsteered replies cut alike."""
    from transformers import AutoTokenizer

    from steering.fluency import FluencyReference, judge, repeated_4grams
    from steering.models import EMBEDDED_GGUF, embedded_model_folder

    tokenizer: Any = AutoTokenizer.from_pretrained(
        str(embedded_model_folder()), gguf_file=EMBEDDED_GGUF
    )

    def texts(ids: list[list[int]], limit: int) -> tuple[str, ...]:
        return tuple(tokenizer.decode(reply[:limit], skip_special_tokens=True) for reply in ids)

    prompts = tuple(saved["prompts"])
    references = {}
    for limit in limits:
        unsteered = texts(saved["unsteered_ids"], limit)
        shares = tuple(repeated_4grams(text) for text in unsteered)
        references[limit] = FluencyReference(saved["model"], prompts, limit, unsteered, shares)
    rows = []
    for saved_row in saved["rows"]:
        row = {k: v for k, v in saved_row.items() if k != "ids"}
        row["verdicts"] = {
            limit: judge(texts(saved_row["ids"], limit), reference)
            for limit, reference in references.items()
        }
        rows.append(row)
    return rows


def tables(rows: list[dict[str, Any]], check: int, long: int) -> str:
    """The tables of docs/guard.md: per vector at the check's limit, the
    check's limits compared, and every setting within the KL budget."""
    unsteered = {limit: v.reference_share for limit, v in rows[0]["verdicts"].items()}
    within = [r for r in rows if r["kl"] <= KL_BUDGET]
    lines = [
        (
            f"| vector | settings | within KL {KL_BUDGET} | of those, loop at {long} tokens "
            f"| flagged by the check ({check} tokens) | flagged, not looping at {long} "
            f"| over KL {KL_BUDGET} | of those, loop at {long} | flagged |"
        ),
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for name in [*dict.fromkeys(r["vector"] for r in rows), "all"]:
        part = [r for r in rows if name in ("all", r["vector"])]
        inside = [r for r in part if r["kl"] <= KL_BUDGET]
        outside = [r for r in part if r["kl"] > KL_BUDGET]
        looping = [r for r in inside if r["verdicts"][long].loops]
        false = [r for r in inside if r["verdicts"][check].loops and not r["verdicts"][long].loops]
        lines.append(
            f"| {name} | {len(part)} | {len(inside)} | {len(looping)} "
            f"| {sum(r['verdicts'][check].loops for r in looping)} | {len(false)} "
            f"| {len(outside)} | {sum(r['verdicts'][long].loops for r in outside)} "
            f"| {sum(r['verdicts'][check].loops for r in outside)} |"
        )
    null = [r for r in rows if r["kl"] < 0.1]
    lines += [
        "",
        (
            f"| check's limit | unsteered mean share | within KL {KL_BUDGET}: loop at {long} "
            f"caught | false alarms | KL < 0.1: mean share minus unsteered, range | flagged |"
        ),
        "|--:|--:|--:|--:|--:|--:|",
    ]
    for limit in sorted(rows[0]["verdicts"]):
        looping = [r for r in within if r["verdicts"][long].loops]
        rises = [r["verdicts"][limit].share - unsteered[limit] for r in null]
        false = [r for r in within if r["verdicts"][limit].loops and not r["verdicts"][long].loops]
        lines.append(
            f"| {limit} | {unsteered[limit]:.3f} "
            f"| {sum(r['verdicts'][limit].loops for r in looping)} of {len(looping)} "
            f"| {len(false)} "
            f"| {min(rises):+.2f} to {max(rises):+.2f} "
            f"| {sum(r['verdicts'][limit].loops for r in null)} of {len(null)} |"
        )
    lines += [
        "",
        (
            f"| vector | layer | strength | alpha | KL | mean share at {check} / {long} tokens "
            f"(unsteered {unsteered[check]:.2f} / {unsteered[long]:.2f}) | check "
            f"| loops at {long} |"
        ),
        "|---|--:|--:|--:|--:|--:|---|---|",
    ]
    for r in sorted(within, key=lambda r: -r["verdicts"][long].share):
        at, far = r["verdicts"][check], r["verdicts"][long]
        lines.append(
            f"| {r['vector']} | {r['layer']} | {r['strength']:+.1f} | {r['alpha']:+.2f} "
            f"| {r['kl']:.3f} | {at.share:.2f} / {far.share:.2f} "
            f"| {'loops' if at.loops else 'fluent'} | {'yes' if far.loops else 'no'} |"
        )
    return "\n".join(lines)


def main() -> None:
    args = _args()
    if args.table_from:
        saved = json.loads(Path(args.table_from).read_text())
    else:
        saved = measure(args)
        Path(args.out).write_text(json.dumps(saved))
        print(f"wrote {args.out}")
    from steering.fluency import DEFAULT_FLUENCY_TOKENS

    check, long = args.check or DEFAULT_FLUENCY_TOKENS, saved["args"]["long"]
    rows = judged(saved, sorted({*CHECK_LIMITS, check, long}))
    print(tables(rows, check, long))


if __name__ == "__main__":
    main()
