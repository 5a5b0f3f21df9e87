"""What one evaluation runs, counted in tokens and multiply-adds.

Counts, on the embedded SmolLM2 (no timing, so the figures do not depend on
the load of the machine), for the demo's search task (`sentiment_search`, its
100 items), the shipped multi-token task (`steer_health`) and the KL guard's
100 neutral sentences:

(a) LM-head positions: where log-probs are needed (the scorer's picks) vs
    every real position (lm-eval's HFLM computes the head everywhere);
(b) padding: tokens run with the cut before the padding buckets (fixed row
    counts filled to 1,024 tokens) vs `steering.bucketing.group_rows`;
(c) contexts shared by several choices: rows run vs requests, and for
    multi-token choices the tokens a shared context (KV cache or tree mask)
    would save;
(e) the KL pass: tokens, scored positions, and the head's share of its work;
and the share of a setting's layer work in its last layer outside the keys
and values (what computing that layer only at scored positions would save).

    OMP_NUM_THREADS=1 python scripts/work_accounting.py [--layer 7]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _old_cut(widths: list[int], batch_size: int, min_tokens: int) -> list[int]:
    """Rows per batch as the scorer cut them before `steering.bucketing`."""
    groups, start = [], 0
    while start < len(widths):
        size = max(1, batch_size, min_tokens // widths[start])
        groups.append(min(size, len(widths) - start))
        start += size
    return groups


def _tokens(widths: list[int], groups: list[int]) -> int:
    total, start = 0, 0
    for rows in groups:
        total += rows * widths[start]
        start += rows
    return total


def _layer_macs(config) -> tuple[int, int]:
    """(multiply-adds per token of one decoder layer, of which keys and values)."""
    hidden, inter = config.hidden_size, config.intermediate_size
    head_dim = getattr(config, "head_dim", None) or hidden // config.num_attention_heads
    q = hidden * config.num_attention_heads * head_dim
    kv = 2 * hidden * config.num_key_value_heads * head_dim
    return 2 * q + kv + 3 * hidden * inter, kv


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layer", type=int, default=7, help="the setting's lowest layer")
    parser.add_argument("--out", default=None, help="also write the figures as JSON")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    from optimize import FitnessConfig, LmEvalFitness
    from optimize.guard.kl import KlGuard
    from optimize.scoring.prefix import MIN_BATCH_TOKENS, _tokenize
    from steering import steerer_for
    from steering.bucketing import CPU_BATCH_COST_TOKENS, group_rows
    from steering.models import load_model

    loaded = load_model()
    steerer = steerer_for(loaded.model, loaded.tokenizer, loaded.name)
    config = loaded.model.config
    layer_macs, kv_macs = _layer_macs(config)
    head_macs = config.hidden_size * config.vocab_size
    layers = config.num_hidden_layers - args.layer
    figures: dict[str, dict] = {}
    for task, limit in (("sentiment_search", 100), ("steer_health", None)):
        task_config = FitnessConfig(task, str(REPO / "tasks"), limit=limit, batch_size=8)
        fitness = LmEvalFitness(steerer, task_config)
        scorer, lm = fitness.prefix_scorer, fitness.lm
        if scorer is None:
            raise SystemExit(f"{task}: the prefix scorer does not run on {loaded.name}")
        requests = fitness.requests()
        rows: dict[tuple[int, ...], int] = {}
        contexts: dict[tuple[int, ...], int] = {}  # context -> tokens run if shared once
        for request in requests:
            context, continuation = _tokenize(lm, *request.args)
            row = tuple((context + continuation)[-(lm.max_length + 1) :][:-1])
            if row not in rows:
                rows[row] = len(row)
                contexts.setdefault(tuple(context), len(context))
                contexts[tuple(context)] += len(continuation) - 1
        widths = sorted(rows.values(), reverse=True)
        picks = sum(int(b.pick_rows.numel()) for b in scorer.batches)
        run_now = sum(int(b.ids.numel()) for b in scorer.batches)
        figures[task] = {
            "requests": len(requests),
            "rows": len(rows),
            "batches_now": len(scorer.batches),
            "real_tokens": sum(widths),
            "padded_tokens_now": run_now,
            "padded_tokens_old_cut": _tokens(widths, _old_cut(widths, 8, MIN_BATCH_TOKENS)),
            "head_positions_scored": picks,
            "head_share_if_every_position": head_macs
            / (head_macs + layer_macs * config.num_hidden_layers),
            "head_share_scored": head_macs * picks
            / (head_macs * picks + layer_macs * layers * run_now),
            "tokens_with_shared_contexts": sum(contexts.values()),
            "last_layer_share": (layer_macs - kv_macs) / (layer_macs * layers),
        }
    guard = KlGuard(steerer)
    kl_widths = sorted(
        (int(b.mask[r].sum()) for b in guard._batches for r in range(b.mask.shape[0])),
        reverse=True,
    )
    kl_run = sum(int(b.ids.numel()) for b in guard._batches)
    figures["kl_guard"] = {
        "sentences": guard.sentences,
        "real_tokens": sum(kl_widths),
        "positions": guard.positions,
        "padded_tokens_now": kl_run,
        "padded_tokens_old_cut": _tokens(kl_widths, _old_cut(kl_widths, 16, MIN_BATCH_TOKENS)),
        "batches_now": len(guard._batches),
        "head_share": head_macs * guard.positions
        / (head_macs * guard.positions + layer_macs * layers * kl_run),
        "padded_tokens_new_cut": _tokens(
            kl_widths, group_rows(kl_widths, 16, MIN_BATCH_TOKENS, CPU_BATCH_COST_TOKENS)
        ),
    }
    figures["model"] = {"layer_macs_per_token": layer_macs, "kv_macs": kv_macs,
                        "head_macs_per_position": head_macs, "layer": args.layer}
    text = json.dumps(figures, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
