"""(e) The demo optimization end to end, this code against an older commit.

Each runs the documented demo (docs/demo.md) as a user does, through
`python -m optimize`, in their own process: model load, fitness build, 30
evaluations (6 particles x 5 iterations, seed 0) on 100 search items, then
the baseline and the best setting on 100 held-out items. The older commit is
checked out into a temporary `git worktree` and run with the same Python
environment, on the same vector file (captured by the older code, format
v1, which this code still reads). The processes start together and run
side by side, so a busy spell of a shared machine hits both; each one's CPU
seconds (from the kernel's accounting of the child) are reported next to
its wall time, since CPU time does not depend on what else runs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._common import REPO, log, table

# The commit before the fitness seams and batched iterations.
OLD_COMMIT = "dd9a8a2"

# The runs started together: the older code (None: no flags of its own; it
# has neither --objective nor the KL guard), this code as a user runs it (the
# KL-guarded objective, the default), and this code ranking by the
# task alone. Both of this code's runs measure the KL over 100 neutral
# sentences for every setting (the run reports it whatever the objective).
# The demo's bounds are alphas: this code's default unit is the relative
# strength, so its runs say --unit alpha to search the same space.
VARIANTS: dict[str, tuple[str, ...] | None] = {
    "before": None,
    "now": ("--unit", "alpha"),
    "now_target": ("--unit", "alpha", "--objective", "target"),
    # a first round on a quarter of the items (optimize/run/first_round.py), opt-in
    "now_first_round": ("--unit", "alpha", "--first-round", "{quarter}"),
}


def _flags(extra: tuple[str, ...] | None, limit: int) -> tuple[str, ...]:
    return tuple(f.format(quarter=max(1, limit // 4)) for f in extra or ())

DEMO = [
    "--task", "sentiment_search", "--heldout-task", "sentiment_heldout",
    "--particles", "6", "--iterations", "5", "--seed", "0",
    "--layer-min", "1", "--layer-max", "15", "--alpha-min", "-3", "--alpha-max", "3",
    "--alpha-decimals", "2", "--c1", "0.5", "--c2", "0.3", "--w", "0.9", "--batch-size", "8",
]


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
        sys.executable, "-m", "optimize", "--vectors", str(vectors), *DEMO, *extra,
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
    search = re.search(r"evaluations \((\d+) cached\) in ([\d.]+) s", output)
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
    history = [(e["layers"], e["alphas"], e["score"]) for e in data["history"]]
    return {
        "layers": best["layers"], "alphas": best["alphas"], "score": best["score"],
        "heldout_best": (held.get("best") or {}).get("score"), "history": history,
    }


def run(limit: int = 100, threads: int | None = 1, commit: str = OLD_COMMIT) -> dict[str, Any]:
    old = _old_tree(commit)
    work = Path(tempfile.mkdtemp(prefix="steerswarm-demo-"))
    try:
        vectors = work / "sentiment.safetensors"
        preset = old / "presets" / "sentiment"
        subprocess.run(
            [sys.executable, "-m", "steering", "capture", "--prompts", str(preset / "concept.txt"),
             "--contrast", str(preset / "contrast.txt"), "--layer", "8", "--coeff", "1",
             "--out", str(vectors)],
            cwd=old, env=_env(threads), check=True, capture_output=True,
        )
        log(f"(e) demo end to end: {commit} and this code side by side, limit {limit}+{limit}")
        started = time.perf_counter()
        processes = {
            name: _start(REPO if extra is not None else old, vectors, work / f"{name}.json",
                         limit, threads, _flags(extra, limit))
            for name, extra in VARIANTS.items()
        }
        runs = _finish_all(processes, started)
        for name in VARIANTS:
            runs[name].update(_best(work / f"{name}.json"))
    finally:
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "remove", "--force", str(old)],
            check=False, capture_output=True,
        )
        shutil.rmtree(work, ignore_errors=True)
    before, now, plain = runs["before"], runs["now"], runs["now_target"]
    first = runs["now_first_round"]

    def same(a: dict[str, Any], b: dict[str, Any]) -> bool:
        return (a["layers"], a["alphas"]) == (b["layers"], b["alphas"])

    same_best = same(before, now)
    same_best_target = same(before, plain)
    same_history = [h[:2] for h in before["history"]] == [h[:2] for h in now["history"]]
    labels = {
        "before": f"before ({commit})",
        "now": "now, default (guarded objective: target + KL pass)",
        "now_target": "now, --objective target (ranks by the task; KL still measured)",
        "now_first_round": f"now, default with --first-round {max(1, limit // 4)}",
    }
    rows = [
        [labels[name], f"{r['wall_s']:.1f} s", f"{r['cpu_s']:.1f} s",
         "" if r["run_s"] is None else f"{r['run_s']:.1f} s",
         f"layer {r['layers'][0]}, alpha {r['alphas'][0]:g}", f"{r['score']:.3f}",
         "" if r["heldout_best"] is None else f"{r['heldout_best']:.3f}"]
        for name, r in runs.items()
    ]
    speedup_cpu = before["cpu_s"] / now["cpu_s"]
    speedup_wall = before["wall_s"] / now["wall_s"]
    target_cpu = before["cpu_s"] / plain["cpu_s"]
    target_wall = before["wall_s"] / plain["wall_s"]
    first_cpu = before["cpu_s"] / first["cpu_s"]
    markdown = (
        "### (e) The demo optimization end to end, against the code before\n\n"
        f"`python -m optimize` on the demo: 6 particles x 5 iterations, seed 0, "
        f"{limit} search + {limit} held-out items, layers 1-15, alpha -3 to 3; the processes "
        f"started together (threads per process: {threads or 'torch default'}).\n\n"
        + table(["code", "wall", "CPU", "search (as printed)", "best setting", "best score",
                 "held-out best"], rows)
        + f"\n\nSpeed-up over before, default run: {speedup_cpu:.2f}x in CPU seconds, "
        f"{speedup_wall:.2f}x in wall time; same best setting: {'yes' if same_best else 'no'}; "
        f"same settings visited in the same order: {'yes' if same_history else 'no'}. "
        f"With --objective target: {target_cpu:.2f}x CPU, {target_wall:.2f}x wall; same best "
        f"setting: {'yes' if same_best_target else 'no'}. With a first round on a quarter of "
        f"the items: {first_cpu:.2f}x CPU; same best setting: "
        f"{'yes' if same(before, first) else 'no'}. (A run that ends first leaves the "
        "machine to the others, so read the CPU figures.)"
    )
    return {
        "markdown": markdown, "commit": commit, "limit": limit, "threads": threads,
        "speedup_cpu": speedup_cpu, "speedup_wall": speedup_wall, "same_best": same_best,
        "same_history": same_history, "speedup_cpu_target": target_cpu,
        "speedup_wall_target": target_wall, "same_best_target": same_best_target,
        "speedup_cpu_first_round": first_cpu, "same_best_first_round": same(before, first),
        "runs": {k: {x: y for x, y in v.items() if x != "output"} for k, v in runs.items()},
    }
