"""(g) Where one demo evaluation's time goes.

The demo's default run scores every setting with the guarded objective: the
target task through `LmEvalFitness` (the prefix scorer) plus the KL guard's
pass over the neutral sentences. This times, in process CPU seconds (which
other jobs on a shared machine do not inflate), each part a run pays:

- once per run: building the target fitness (lm-eval task, requests,
  tokenization, the scorer's check against lm-eval), building the KL guard
  (tokenizing the neutral set, its unsteered reference), the unsteered
  baseline (which fills the store of hidden states);
- per setting (the demo's recommended one, layer 7, alpha 1.05): the target
  scoring, split into the model work (`PrefixScorer.score`) and lm-eval's
  metric around it, and the KL pass;
- the floor of the model work: the tokens the decoder layers at and above
  the setting's layer must process (rows x padded width, and the real ones),
  and the same layers timed as bare matrix products of that size.

It also lists the functions with the most own time in one guarded
evaluation (cProfile), so a reader sees whether the forward or something
around it dominates.
"""

from __future__ import annotations

import cProfile
import io
import pstats
import time
from collections.abc import Callable
from typing import Any

from bench._common import TASKS, Bench, log, table

DEMO_LAYER, DEMO_ALPHA = 7, 1.05


def _cpu(function: Callable[[], Any], repeat: int = 1) -> tuple[float, Any]:
    """Least process-CPU seconds of `repeat` calls, and the last result."""
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.process_time()
        result = function()
        best = min(best, time.process_time() - start)
    return best, result


def _matmul_floor(model: Any, tokens: int, layers: int) -> float:
    """CPU seconds of the decoder layers' weight products alone (q, k, v, o,
    gate, up, down) for `tokens` tokens through `layers` layers: what no
    rearranging of the same float32 work can go under."""
    import torch

    layer = model.model.layers[0]
    weights = [
        layer.self_attn.q_proj.weight, layer.self_attn.k_proj.weight,
        layer.self_attn.v_proj.weight, layer.self_attn.o_proj.weight,
        layer.mlp.gate_proj.weight, layer.mlp.up_proj.weight, layer.mlp.down_proj.weight,
    ]
    x = torch.randn(tokens, model.config.hidden_size)
    inter = torch.randn(tokens, model.config.intermediate_size)

    def one_layer() -> None:
        with torch.no_grad():
            for w in weights:
                torch.nn.functional.linear(inter if w.shape[1] != x.shape[1] else x, w)

    seconds, _ = _cpu(one_layer, repeat=3)
    return seconds * layers


def run(bench: Bench, limit: int | None = 100, repeat: int = 2) -> dict[str, Any]:
    from optimize import FitnessConfig, LmEvalFitness
    from optimize.guard.kl import GuardedFitness, KlGuard
    from presets import load_preset
    from steering import capture_vector
    from steering.capture import recapture

    steerer = bench.steerer
    n = bench.num_layers
    log(f"(g) profile: sentiment_search, limit {limit}, setting layer {DEMO_LAYER} "
        f"alpha {DEMO_ALPHA}")
    config = FitnessConfig("sentiment_search", str(TASKS), limit=limit, batch_size=8)
    rows: list[list[str]] = []
    build_s, fitness = _cpu(lambda: LmEvalFitness(steerer, config))
    guard_s, guard = _cpu(lambda: KlGuard(steerer, batch_size=8))
    baseline_s, _ = _cpu(lambda: fitness.metrics(()))
    preset = load_preset("sentiment")
    capture_s, concept = _cpu(
        lambda: capture_vector(steerer, preset.concept, min(8, n - 1), 1.0, preset.contrast)
    )
    recapture_s, moved = _cpu(lambda: recapture(steerer, concept, DEMO_LAYER))
    vectors = [moved.with_alpha(DEMO_ALPHA)]
    guarded = GuardedFitness(fitness, guard)
    target_s, _ = _cpu(lambda: fitness.metrics(vectors), repeat)
    scorer = fitness.prefix_scorer
    model_s = float("nan")
    if scorer is not None:
        with steerer.applied(vectors):
            model_s, _ = _cpu(lambda: scorer.score(DEMO_LAYER), repeat)
    kl_s, _ = _cpu(lambda: guard.evaluate(vectors), repeat)
    guarded_s, _ = _cpu(lambda: guarded.metrics(vectors), repeat)

    profiler = cProfile.Profile(time.process_time)  # CPU time: other jobs add nothing
    profiler.enable()
    guarded.metrics(vectors)
    profiler.disable()
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(10)
    top = [line for line in text.getvalue().splitlines() if line.strip()][-10:]

    def tokens_of(batches: Any) -> tuple[int, int]:
        padded = sum(int(b.ids.numel()) for b in batches)
        # the scorer pads with 0 (a token the texts do not use); the guard keeps a mask
        real = sum(int(b.mask.sum() if hasattr(b, "mask") else (b.ids != 0).sum()) for b in batches)
        return padded, real

    steered_layers = n - DEMO_LAYER
    target_tokens = tokens_of(scorer.batches) if scorer is not None else (0, 0)
    guard_tokens = tokens_of(guard._batches)
    floor_target = _matmul_floor(steerer.model, target_tokens[0], steered_layers)
    floor_guard = _matmul_floor(steerer.model, guard_tokens[0], steered_layers)
    rows += [
        ["once: build the target fitness (lm-eval task, requests, tokens, check)",
         f"{build_s:.2f}"],
        ["once: build the KL guard (neutral set, unsteered reference)", f"{guard_s:.2f}"],
        ["once: unsteered baseline (fills the store)", f"{baseline_s:.2f}"],
        ["once: capture the concept (all layers, one pass)", f"{capture_s:.2f}"],
        [f"per new layer: move the vector to layer {DEMO_LAYER}", f"{recapture_s:.3f}"],
        ["per setting: target task (LmEvalFitness.metrics)", f"{target_s:.2f}"],
        ["  of which the model work (PrefixScorer.score)", f"{model_s:.2f}"],
        ["per setting: the KL pass (KlGuard.evaluate)", f"{kl_s:.2f}"],
        ["per setting: guarded, both (GuardedFitness.metrics)", f"{guarded_s:.2f}"],
        [(f"floor: weight products of layers {DEMO_LAYER}-{n - 1}, target "
          f"({target_tokens[0]} padded tokens, {target_tokens[1]} real)"), f"{floor_target:.2f}"],
        [(f"floor: the same for the KL pass ({guard_tokens[0]} padded tokens, "
          f"{guard_tokens[1]} real)"), f"{floor_guard:.2f}"],
    ]
    markdown = (
        "### (g) Where one demo evaluation's time goes\n\n"
        f"sentiment_search, {limit} documents, batch size 8, the setting layer {DEMO_LAYER} "
        f"alpha {DEMO_ALPHA} (the demo's pick); process CPU seconds, the least of {repeat} "
        "calls.\n\n"
        + table(["part", "CPU s"], rows)
        + "\n\nMost own CPU time in one guarded evaluation"
        " (cProfile on process time, tottime):\n\n```\n"
        + "\n".join(top)
        + "\n```"
    )
    return {
        "markdown": markdown, "limit": limit, "layer": DEMO_LAYER, "alpha": DEMO_ALPHA,
        "cpu_s": {
            "build_fitness": build_s, "build_guard": guard_s, "baseline": baseline_s,
            "capture": capture_s, "recapture": recapture_s, "target": target_s,
            "target_model": model_s, "kl": kl_s, "guarded": guarded_s,
            "floor_target": floor_target, "floor_guard": floor_guard,
        },
        "tokens": {"target": target_tokens, "guard": guard_tokens},
        "cprofile_top": top,
    }
