"""The capture caps' figure: the process's memory before and after a large capture,
with the code before the capture caps and with the current code
(`python -m bench.capture_rss`).

Before the caps, a 5,000-line capture held the app's model for an hour and
grew it from 1.1 to 10.3 GB. The current code caps a capture at
MAX_PROMPTS_PER_CAPTURE prompts per list (steering/limits.py), batches it in
padded buckets and reports progress. This measures, each in a fresh process
on the embedded SmolLM2, the user's own call `capture_vector(steerer,
prompts, layer, alpha)`:

- `old`: the code at OLD_REV (the commit before the caps), checked out into a
  temporary git worktree that is removed afterwards;
- `new`: this checkout.

Both capture the same seeded prompts (varied lengths, like a pasted file), at
the cap when it is below --prompts. Each child prints one JSON line: RSS after
the model is loaded and warmed up (before), the peak sampled every 0.2 s
during the capture, RSS after it (the Steerer keeps each prompt's
activations for the session), and after that cache is dropped. The current
code is also asked for --prompts lines when they are above the cap: the
refusal's message, its time and the memory it cost.

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python -m bench.capture_rss --prompts 5000

prints one JSON line per measurement, then a table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The main commit just before the capture caps, batches in buckets and the
# write-failure fallbacks (the parent of the first commit that added them).
OLD_REV = "1430f43"

# Runs in the child, with the measured tree first on sys.path. Only the API
# both trees share: load_model, steerer_for, capture_vector, steerer.activations.
CHILD = r"""
import gc, json, os, random, sys, threading, time
import torch
from steering import capture_vector, load_model, steerer_for

count, words_max, layer, seed = (int(a) for a in sys.argv[1:5])
WORDS = ("the a happy sad river mountain bright dark quickly slowly music silence "
         "friend stranger morning evening laugh cry gold rain window garden letter "
         "story dream road city ocean fire snow quiet loud warm cold").split()
rng = random.Random(seed)
prompts = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, words_max))).capitalize() + "."
           for _ in range(count)]

def rss_mb():
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
loaded = load_model()
steerer = steerer_for(loaded.model, loaded.tokenizer, loaded.name)
capture_vector(steerer, prompts[:16], layer, 1.0)  # warm up the kernels and the cache's shape
steerer.activations.clear()
gc.collect()
before = rss_mb()
peak = [before]
stop = threading.Event()

def watch():
    while not stop.wait(0.2):
        peak[0] = max(peak[0], rss_mb())

watcher = threading.Thread(target=watch, daemon=True)
watcher.start()
started = time.perf_counter()
cpu = time.process_time()
try:
    capture_vector(steerer, prompts, layer, 1.0)
    outcome = "captured"
except Exception as exc:
    outcome = f"{type(exc).__name__}: {exc}"
seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
stop.set()
watcher.join()
after = rss_mb()
steerer.activations.clear()
gc.collect()
print(json.dumps({
    "prompts": count, "outcome": outcome, "seconds": round(seconds, 1),
    "cpu_seconds": round(cpu_seconds, 1), "rss_before_mb": round(before),
    "rss_peak_mb": round(max(peak[0], after)), "rss_after_mb": round(after),
    "rss_after_cache_dropped_mb": round(rss_mb()), "torch_threads": torch.get_num_threads(),
}))
"""


def measure(tree: Path, prompts: int, words_max: int, layer: int, seed: int) -> dict:
    """One capture in a fresh process running the code of `tree`."""
    env = {**os.environ, "PYTHONPATH": str(tree), "TQDM_DISABLE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(prompts), str(words_max), str(layer), str(seed)],
        cwd=tree, env=env, capture_output=True, text=True, check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"the capture in {tree} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def old_tree(rev: str) -> Path:
    """A temporary worktree of this repository at `rev`."""
    folder = Path(tempfile.mkdtemp(prefix="steerswarm-old-")) / "tree"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(folder), rev],
                   check=True, capture_output=True)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=5000, help="lines asked for (default 5,000)")
    parser.add_argument("--code", default="old,new", help="old, new or old,new")
    parser.add_argument("--old-rev", default=OLD_REV)
    parser.add_argument(
        "--words-max", type=int, default=60, help="prompt length: 3 to this many words"
    )
    parser.add_argument("--layer", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from steering.limits import MAX_PROMPTS_PER_CAPTURE

    measured = min(args.prompts, MAX_PROMPTS_PER_CAPTURE)
    rows: list[tuple[str, dict]] = []
    for code in args.code.split(","):
        if code == "new":
            tree = ROOT
        elif code == "old":
            tree = old_tree(args.old_rev)
        else:
            raise SystemExit(f"--code takes old and/or new, got {code!r}")
        try:
            more = code == "new" and args.prompts > measured
            runs = [measured] + ([args.prompts] if more else [])
            for prompts in runs:
                row = measure(tree, prompts, args.words_max, args.layer, args.seed)
                row["code"] = code if code == "new" else f"old ({args.old_rev})"
                print(json.dumps(row), flush=True)
                rows.append((code, row))
        finally:
            if code == "old":
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)],
                               check=False, capture_output=True)
                shutil.rmtree(tree.parent, ignore_errors=True)
    print(f"\n{'code':<16}{'prompts':>8}{'s':>8}{'before':>8}{'peak':>8}{'after':>8}"
          f"{'dropped':>9}  (MB RSS)")
    for _code, row in rows:
        print(f"{row['code']:<16}{row['prompts']:>8}{row['seconds']:>8}{row['rss_before_mb']:>8}"
              f"{row['rss_peak_mb']:>8}{row['rss_after_mb']:>8}"
              f"{row['rss_after_cache_dropped_mb']:>9}"
              f"  {row['outcome'][:70]}")


if __name__ == "__main__":
    main()
