"""(e) The demo optimization end to end, this code's default run against an older commit.

Each seed runs the documented demo (docs/demo.md) as a user does, through
`python -m optimize`, in its own process: model load, fitness build, the
search on the demo's search task, then its held-out task (100 items each).
The older code runs at the demo's documented size, 30 evaluations (6
particles x 5 iterations over layers 1-15 and alpha -3..3), each on all 100
search items. This code runs its default run, only the two tasks named:
the search ranks its settings on part of the search items, the best few are
confirmed on the rest, and the one about to be recommended has its replies
checked for loops, before the held-out check. The older commit is checked
out into a temporary `git worktree` and run with the same Python
environment, on the same vector file (captured by the older code, format
v1, which this code still reads). For each seed the
two processes start together and run side by side, so a busy spell of a
shared machine hits both; each one's CPU seconds (from the kernel's
accounting of the child) are reported next to its wall time, since CPU time
does not depend on what else runs.

The held-out gain of this code is given twice: of the setting it checked
(its recommendation, or its best candidate when it recommends nothing,
comparable to the older code's pick), and as applied (0 when it recommends
nothing: the user applies nothing).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._common import REPO, log, table

# The commit before the seams, the batching and the guard.
OLD_COMMIT = "dd9a8a2"

# Both codes score the demo's task and check their pick on its held-out task.
TASK = ("--task", "sentiment_search", "--heldout-task", "sentiment_heldout")

# The runs of each seed: the older code at the size the demo documents (its
# swarm, space and batch), and this code's default run (the tasks named,
# everything else as it comes).
VARIANTS: dict[str, tuple[str, ...]] = {
    "before": (
        "--particles", "6", "--iterations", "5",
        "--layer-min", "1", "--layer-max", "15", "--alpha-min", "-3", "--alpha-max", "3",
        "--alpha-decimals", "2", "--c1", "0.5", "--c2", "0.3", "--w", "0.9",
        "--batch-size", "8",
    ),
    "now": (),
}


def _env(threads: int | None) -> dict[str, str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TQDM_DISABLE="1")
    env["TRANSFORMERS_OFFLINE"] = "1"
    env["TOKENIZERS_PARALLELISM"] = "false"
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    env.pop("PYTHONPATH", None)
    return env


def _old_tree(commit: str) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="steerswarm-old-")) / "tree"
    subprocess.run(
        ["git", "-C", str(REPO), "worktree", "add", "--detach", str(folder), commit],
        check=True, capture_output=True,
    )
    return folder


def _start(
    tree: Path, vectors: Path, out: Path, limit: int, threads: int | None, extra: tuple[str, ...]
) -> Any:
    command = [
        sys.executable, "-m", "optimize", "--vectors", str(vectors), *TASK, *extra,
        "--include-path", str(tree / "tasks"), "--limit", str(limit),
        "--heldout-limit", str(limit), "--out", str(out), "--quiet",
    ]
    return subprocess.Popen(
        command, cwd=tree, env=_env(threads), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True,
    )


def _finish_all(processes: dict[str, Any], started: float) -> dict[str, dict[str, Any]]:
    """Each run's figures, taken as it ends: waiting for the runs in a fixed
    order would give a run that ended early the wall time of a later one."""
    pending = {process.pid: name for name, process in processes.items()}
    runs: dict[str, dict[str, Any]] = {}
    while pending:
        pid, status, usage = os.wait4(-1, 0)
        if pid in pending:
            name = pending.pop(pid)
            runs[name] = _finish(processes[name], status, usage, time.perf_counter() - started)
    return {name: runs[name] for name in processes}


def _finish(process: Any, status: int, usage: Any, wall: float) -> dict[str, Any]:
    process.returncode = os.waitstatus_to_exitcode(status)
    output = process.stdout.read()
    if process.returncode != 0:
        raise RuntimeError(f"the demo run failed ({process.returncode}):\n{output[-2000:]}")
    # "31 evaluations (2 cached) in 48.2 s" (older code), "19 evaluations in 48.2 s: ..."
    search = re.search(r"evaluations (?:\((\d+) cached\) )?in ([\d.]+) s", output)
    return {
        "wall_s": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "run_s": float(search.group(2)) if search else None,
        "output": output,
    }


def _best(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text())
    best = data["best"]
    held = data.get("heldout") or {}
    verdict = data.get("verdict")
    checked = (held.get("best") or {}).get("score")
    baseline = (held.get("baseline") or {}).get("score")
    gain = None if checked is None or baseline is None else 100.0 * (checked - baseline)
    recommended = None if verdict is None else verdict["kind"] == "recommended"
    return {
        "layers": (held.get("best") or best)["layers"],
        "alphas": (held.get("best") or best)["alphas"],
        "score": best["score"],
        "heldout_gain": gain,
        # what a user applies: the older code always offered its best; this code
        # only a recommendation
        "applied_gain": gain if recommended in (None, True) else 0.0,
        "verdict": None if verdict is None else verdict["kind"],
        "history": [(e["layers"], e["alphas"], e["score"]) for e in data["history"]],
    }


def run(
    limit: int = 100, threads: int | None = 1, commit: str = OLD_COMMIT, seeds: int = 5
) -> dict[str, Any]:
    old = _old_tree(commit)
    work = Path(tempfile.mkdtemp(prefix="steerswarm-demo-"))
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in VARIANTS}
    try:
        vectors = work / "sentiment.safetensors"
        preset = old / "presets" / "sentiment"
        subprocess.run(
            [sys.executable, "-m", "steering", "capture", "--prompts", str(preset / "concept.txt"),
             "--contrast", str(preset / "contrast.txt"), "--layer", "8", "--coeff", "1",
             "--out", str(vectors)],
            cwd=old, env=_env(threads), check=True, capture_output=True,
        )
        for seed in range(seeds):
            log(f"(e) demo seed {seed}: {commit} and this code side by side, {limit}+{limit} items")
            started = time.perf_counter()
            processes = {
                name: _start(old if name == "before" else REPO, vectors,
                             work / f"{name}-{seed}.json", limit, threads,
                             (*extra, "--seed", str(seed)))
                for name, extra in VARIANTS.items()
            }
            finished = _finish_all(processes, started)
            for name in VARIANTS:
                finished[name].update(_best(work / f"{name}-{seed}.json"))
                finished[name].pop("output", None)
                runs[name].append({"seed": seed, **finished[name]})
    finally:
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "remove", "--force", str(old)],
            check=False, capture_output=True,
        )
        shutil.rmtree(work, ignore_errors=True)

    def mean(name: str, key: str) -> float:
        values = [r[key] for r in runs[name] if r[key] is not None]
        return statistics.fmean(values) if values else float("nan")

    rows = []
    for before, now in zip(runs["before"], runs["now"], strict=True):
        rows.append([
            str(before["seed"]), f"{before['cpu_s']:.0f} s", f"{now['cpu_s']:.0f} s",
            f"{before['cpu_s'] / now['cpu_s']:.2f}x",
            f"layer {before['layers'][0]}, alpha {before['alphas'][0]:g}",
            f"{before['heldout_gain']:+.1f}",
            f"layer {now['layers'][0]}, alpha {now['alphas'][0]:g}",
            f"{now['heldout_gain']:+.1f}", str(now["verdict"]), f"{now['applied_gain']:+.1f}",
        ])
    ratio = mean("before", "cpu_s") / mean("now", "cpu_s")
    markdown = (
        "### (e) The demo end to end: this code's default run against the code before\n\n"
        f"`python -m optimize` on the demo, {limit} search + {limit} held-out items, seeds "
        f"0-{seeds - 1}: {commit} at the demo's size (6 particles x 5 iterations, layers "
        "1-15, alpha -3 to 3), this code with its defaults; the two processes of a seed "
        f"started together (threads per process: {threads or 'default'}).\n\n"
        + table(["seed", f"CPU {commit}", "CPU now", "speed-up", f"{commit} pick",
                 "held-out gain", "now: checked", "held-out gain", "verdict",
                 "gain as applied"], rows)
        + f"\n\nMean CPU: {mean('before', 'cpu_s'):.0f} s before, {mean('now', 'cpu_s'):.0f} s "
        f"now ({ratio:.2f}x; target at least 3x). Mean held-out gain: "
        f"{mean('before', 'heldout_gain'):+.1f} points before, "
        f"{mean('now', 'heldout_gain'):+.1f} now for the setting checked, "
        f"{mean('now', 'applied_gain'):+.1f} as applied (nothing when nothing is recommended)."
    )
    return {
        "markdown": markdown, "commit": commit, "limit": limit, "threads": threads,
        "seeds": seeds, "speedup_cpu": ratio,
        "heldout_gain_before": mean("before", "heldout_gain"),
        "heldout_gain_now": mean("now", "heldout_gain"),
        "applied_gain_now": mean("now", "applied_gain"),
        "runs": runs,
    }
