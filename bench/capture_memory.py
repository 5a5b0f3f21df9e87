"""Resident memory of one large capture (`python -m bench.capture_memory`).

Before the capture caps, a 5,000-prompt capture grew the process by gigabytes
(allocator fragmentation from many differently sized activation tensors).
This builds N seeded prompts of varied length, reads the process's RSS
before, during (peak) and after `Steerer.prompt_activations` on the embedded
SmolLM2, and prints the figures as one JSON line. `--direct` bypasses the
per-capture prompt cap (steering/limits.py) to reproduce the old request.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import threading
import time

WORDS = (
    "the a happy sad river mountain bright dark quickly slowly music silence "
    "friend stranger morning evening laugh cry gold rain window garden letter "
    "story dream road city ocean fire snow quiet loud warm cold"
).split()


def prompts(count: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [
        " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 60))).capitalize() + "."
        for _ in range(count)
    ]


def rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=5000)
    parser.add_argument("--direct", action="store_true", help="call capture_all_layers (no cap)")
    args = parser.parse_args()
    import torch

    from steering import steerer_for
    from steering.activations import capture_all_layers
    from steering.models import load_model

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    loaded = load_model()
    steerer = steerer_for(loaded.model, loaded.tokenizer, loaded.name)
    texts = prompts(args.prompts)
    steerer.prompt_activations(texts[:8])  # warm up the kernels
    steerer.activations.clear()
    before = rss_mb()
    peak = [before]
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(0.2):
            peak[0] = max(peak[0], rss_mb())

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    started = time.perf_counter()
    if args.direct:
        tokens = [steerer._tokens(t) for t in texts]
        result = capture_all_layers(steerer.model, steerer.layers, tokens, steerer.device)
    else:
        result = steerer.prompt_activations(texts)
    seconds = time.perf_counter() - started
    stop.set()
    watcher.join()
    result_mb = result.numel() * result.element_size() / 2**20
    after = rss_mb()
    print(json.dumps({
        "prompts": args.prompts, "seconds": round(seconds, 1), "rss_before_mb": round(before),
        "rss_peak_mb": round(max(peak[0], after)), "rss_after_mb": round(after),
        "result_mb": round(result_mb), "torch_threads": torch.get_num_threads(),
    }))


if __name__ == "__main__":
    main()
