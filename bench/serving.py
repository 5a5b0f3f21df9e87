"""(i) Serving: four requests with four different steering settings, sent
together, as one batched generation or one after another.

The API's queue (steering/serving/queue.py) runs waiting greedy requests in
one `model.generate`, each row with its own steering (the Steerer's per-row
deltas). Each round submits the same four chat requests, each choosing a
saved vector by name at its own layer and strength, while the model lock is
held (so they arrive together, as concurrent clients' requests do), then
releases it and times until all four are answered: with `max_batch` 4 (one
generation) and with `max_batch` 1 (four in turn). Both give the same greedy
replies (checked), so the throughput ratio is the time ratio.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from bench._common import Bench, interleaved, log, ratio, table

PROMPTS = (
    "Describe your morning in two sentences.",
    "Tell me about the sea.",
    "What should I cook tonight? Give me one idea and say why.",
    "Write a short note to a friend who is moving away.",
)
# (layer as a share of the depth, strength): four different settings
SETTINGS = ((0.3, 0.15), (0.4, -0.2), (0.5, 0.25), (0.6, -0.1))


def run(bench: Bench, tokens: int, rounds: int) -> dict[str, Any]:
    from steering import save_vectors
    from steering.persist import DataFolder
    from steering.serving import GenerationQueue, Job, VectorCatalog, parse_steering
    from steering.serving.prompts import chat_tokens, row_request, sampling_of
    from steering.session import ModelSession

    steerer, n = bench.steerer, bench.num_layers
    layers = [min(n - 1, round(share * n)) for share, _strength in SETTINGS]
    folder = DataFolder(Path(tempfile.mkdtemp(prefix="steerswarm-bench-serving-")))
    vectors = [bench.vector(layer, 1.0) for layer in layers]
    save_vectors(folder.vectors_dir / "bench.safetensors", vectors, steerer.info)
    session = ModelSession(lambda: bench.loaded, data=folder)
    jobs = []
    for i, (prompt, (_share, strength)) in enumerate(zip(PROMPTS, SETTINGS, strict=True)):
        ids = chat_tokens(steerer.tokenizer, [{"role": "user", "content": prompt}])
        row = row_request(steerer.info, ids, tokens, sampling_of(0, None, None), None, "messages",
                          tokens)
        steering = parse_steering({"vectors": [{"name": f"bench#{i + 1}", "strength": strength}]})
        jobs.append(Job(row, steering))
    queues = {
        "batched": GenerationQueue(session, VectorCatalog(folder), max_batch=len(jobs)),
        "one after another": GenerationQueue(session, VectorCatalog(folder), max_batch=1),
    }
    replies: dict[str, list[Any]] = {}

    def serve(name: str) -> Any:
        def together() -> None:
            queue = queues[name]
            with session.lock:  # they wait together, as concurrent requests do
                tickets = [queue.submit(job) for job in jobs]
            replies[name] = [ticket.wait(600) for ticket in tickets]

        return together

    log(f"(i) serving: {len(jobs)} requests of up to {tokens} tokens, layers {layers}, "
        f"{rounds} rounds")
    try:
        timings = interleaved({name: serve(name) for name in queues}, rounds)
    finally:
        for queue in queues.values():
            queue.close()
    batches = {name: queue.status().batches for name, queue in queues.items()}
    same = [r.text for r in replies["batched"]] == [r.text for r in replies["one after another"]]
    generated = sum(r.completion_tokens for r in replies["batched"])
    r = ratio(timings["one after another"], timings["batched"])
    tps = {name: generated / t.median for name, t in timings.items()}
    figures = ["throughput, batched / one after another", r.cell(2), f"{r.cpu_median:.2f}",
               f"{r.best:.2f}"]
    markdown = (
        "### (i) Serving: four differently steered requests sent together\n\n"
        f"{len(jobs)} chat requests, greedy, up to {tokens} new tokens each ({generated} in "
        f"all), each choosing a saved vector at its own layer ({layers}) and strength; "
        f"{rounds} interleaved rounds. Batched: one generation, one steering setting per row; "
        f"otherwise one generation per request. Same replies both ways: {'yes' if same else 'NO'}."
        "\n\n"
        + table(["figure", "median (range)", "CPU-time ratio", "fastest rounds"], [figures])
        + f"\n\nTokens/s: batched {tps['batched']:.1f}, one after another "
        f"{tps['one after another']:.1f}."
    )
    return {
        "markdown": markdown,
        "tokens": tokens,
        "rounds": rounds,
        "layers": layers,
        "settings": SETTINGS,
        "generated_tokens": generated,
        "timings": timings,
        "tokens_per_second": tps,
        "ratio": r,
        "same_replies": same,
        "generations": batches,
    }
