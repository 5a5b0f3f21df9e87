"""(a) Generation: tokens per second steered over unsteered.

Greedy chat replies of exactly `tokens` new tokens (min = max new tokens, so
every variant generates the same number), unsteered, with one vector, and
with four vectors on four layers. Steering is set before each timed reply,
outside the timing; the reply runs through `model.generate` as the Chat tab
does.
"""

from __future__ import annotations

from typing import Any

from bench._common import Bench, interleaved, log, met, ratio, table

TARGET = 0.97
PROMPT = "Tell me about your favourite day out, in a few sentences."


def run(bench: Bench, tokens: int, rounds: int) -> dict[str, Any]:
    import torch

    from steering.generate import chat_input_ids

    model, tokenizer, steerer = bench.loaded.model, bench.loaded.tokenizer, bench.steerer
    n = bench.num_layers
    one_layer = round(0.4 * n)
    four_layers = [round(f * n) for f in (0.2, 0.4, 0.6, 0.8)]
    settings = {
        "unsteered": [],
        "1 vector": [bench.vector(one_layer, 4.0)],
        "4 vectors": [bench.vector(layer, 2.0) for layer in four_layers],
    }
    ids = chat_input_ids(tokenizer, [{"role": "user", "content": PROMPT}]).to(model.device)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    outputs: dict[str, list[int]] = {}

    def reply_with(name: str) -> Any:
        def reply() -> None:
            with torch.no_grad():
                out = model.generate(
                    input_ids=ids,
                    attention_mask=torch.ones_like(ids),
                    max_new_tokens=tokens,
                    min_new_tokens=tokens,
                    do_sample=False,
                    temperature=None,
                    top_p=None,
                    top_k=None,
                    pad_token_id=pad,
                )
            generated = out[0, ids.shape[1] :].tolist()
            assert len(generated) == tokens, len(generated)
            outputs[name] = generated

        return reply

    log(f"(a) generation: {tokens} tokens, {rounds} rounds, layers {one_layer} / {four_layers}")
    # Only the generate call is timed; the vectors are set before it.
    try:
        timings = interleaved(
            {name: reply_with(name) for name in settings},
            rounds,
            setup={name: _setter(steerer, vectors) for name, vectors in settings.items()},
        )
    finally:
        steerer.reset()
    base = timings["unsteered"]
    rows, figures = [], {}
    for name in ("1 vector", "4 vectors"):
        # tokens/s steered over unsteered = unsteered time / steered time
        r = ratio(base, timings[name])
        figures[name] = r
        rows.append(
            [
                f"tokens/s, {name} / unsteered",
                r.cell(3),
                f"{r.cpu_median:.3f}",
                f"{r.best:.3f}",
                f">= {TARGET}",
                met(r.median, TARGET, at_least=True),
            ]
        )
    tps = {name: tokens / t.median for name, t in timings.items()}
    markdown = (
        "### (a) Generation\n\n"
        f"Greedy replies of {tokens} tokens, {rounds} interleaved rounds; unsteered "
        f"{tps['unsteered']:.1f} tokens/s, one vector at layer {one_layer} "
        f"{tps['1 vector']:.1f}, four vectors at layers {four_layers} "
        f"{tps['4 vectors']:.1f}.\n\n"
        + table(
            ["figure", "median (range)", "CPU-time ratio", "fastest rounds", "target", "met"],
            rows,
        )
    )
    return {
        "markdown": markdown,
        "tokens": tokens,
        "rounds": rounds,
        "layers": {"1 vector": [one_layer], "4 vectors": four_layers},
        "timings": timings,
        "tokens_per_second": tps,
        "ratios": figures,
        "steering_changed_output": {
            name: outputs[name] != outputs["unsteered"] for name in ("1 vector", "4 vectors")
        },
        "target": TARGET,
    }


def _setter(steerer: Any, vectors: list[Any]) -> Any:
    return lambda: steerer.set_vectors(vectors)
