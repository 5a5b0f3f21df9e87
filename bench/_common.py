"""What every benchmark shares: interleaved timing, ratios, the machine, output.

Every figure is a ratio of two variants timed side by side in one process,
in rounds (A, B, A, B, ...; the order rotates each round), so a slow spell
on a shared machine hits both sides. A figure is the median over rounds of
the per-round ratio, with the lowest and highest round ratio beside it.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
TASKS = REPO / "tasks"
RESULTS = REPO / "bench" / "results"


def log(message: str) -> None:
    """Progress on stderr, so stdout holds only the tables."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class Timing:
    """Wall and process-CPU seconds of each round of one variant."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.wall)

    def to_dict(self) -> dict[str, Any]:
        return {"wall_s": self.wall, "cpu_s": self.cpu, "median_wall_s": self.median}


def interleaved(
    variants: Mapping[str, Callable[[], Any]],
    rounds: int,
    warmup: bool = True,
    setup: Mapping[str, Callable[[], Any]] | None = None,
    warmup_skip: Sequence[str] = (),
) -> dict[str, Timing]:
    """Time each variant once per round, rotating the order every round.

    With `warmup`, each variant (but those in `warmup_skip`) runs once untimed
    first (lazy imports, allocator growth). `setup[name]`, when given, runs
    untimed before every run of that variant.
    """
    names = list(variants)
    setup = setup or {}

    def prepare(name: str) -> None:
        if name in setup:
            setup[name]()

    if warmup:
        for name in (n for n in names if n not in warmup_skip):
            log(f"  warm-up: {name}")
            prepare(name)
            variants[name]()
    timings = {name: Timing() for name in names}
    for round_no in range(rounds):
        shift = round_no % len(names)
        for name in names[shift:] + names[:shift]:
            prepare(name)
            cpu0, wall0 = time.process_time(), time.perf_counter()
            variants[name]()
            wall = time.perf_counter() - wall0
            timings[name].wall.append(wall)
            timings[name].cpu.append(time.process_time() - cpu0)
        log(
            f"  round {round_no + 1}/{rounds}: "
            + ", ".join(f"{n} {timings[n].wall[-1]:.2f}s" for n in names)
        )
    return timings


@dataclass(frozen=True)
class Ratio:
    """Median over rounds of a per-round ratio, with its spread, and the
    ratio of the two variants' fastest rounds (other jobs on the machine
    only ever add time, so the fastest round is the least disturbed)."""

    median: float
    low: float
    high: float
    cpu_median: float
    best: float

    def to_dict(self) -> dict[str, float]:
        return {
            "median": self.median,
            "low": self.low,
            "high": self.high,
            "cpu_median": self.cpu_median,
            "best": self.best,
        }

    def cell(self, digits: int = 2) -> str:
        return f"{self.median:.{digits}f} ({self.low:.{digits}f}-{self.high:.{digits}f})"


def ratio(numerator: Timing, denominator: Timing) -> Ratio:
    """numerator / denominator, round by round (rounds are paired)."""
    walls = [a / b for a, b in zip(numerator.wall, denominator.wall, strict=True)]
    cpus = [a / b for a, b in zip(numerator.cpu, denominator.cpu, strict=True) if b > 0]
    return Ratio(
        median=statistics.median(walls),
        low=min(walls),
        high=max(walls),
        cpu_median=statistics.median(cpus) if cpus else float("nan"),
        best=min(numerator.wall) / min(denominator.wall),
    )


def machine() -> dict[str, Any]:
    """The machine the figures come from."""
    import torch

    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": "cpu",
    }
    with contextlib.suppress(OSError):  # no load average on this platform
        info["load_average"] = os.getloadavg()
    if torch.cuda.is_available():
        info["device"] = "cuda"
        info["gpu"] = torch.cuda.get_device_name(0)
    import lm_eval
    import transformers

    info["transformers"] = transformers.__version__
    info["lm_eval"] = getattr(lm_eval, "__version__", "unknown")
    return info


def machine_line(info: Mapping[str, Any]) -> str:
    where = info.get("gpu") or f"{info['cpu']}, {info['cores']} cores"
    return (
        f"{where}; torch {info['torch']} ({info['torch_threads']} threads), "
        f"transformers {info['transformers']}, lm-eval {info['lm_eval']}"
    )


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def met(value: float, target: float, at_least: bool) -> str:
    ok = value >= target if at_least else value <= target
    return "yes" if ok else "**no**"


def write_json(name: str, payload: dict[str, Any], folder: Path = RESULTS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    payload = {"bench": name, "when": stamp, **payload}
    path = folder / f"{name}-{stamp}.json"
    path.write_text(json.dumps(payload, indent=2, default=_jsonable) + "\n")
    latest = folder / f"{name}.json"
    latest.write_text(path.read_text())
    return path


def _jsonable(value: Any) -> Any:
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, (tuple, set)):
        return list(value)
    return str(value)


# A difference-of-means concept that clearly steers SmolLM2 (see the notes).
JOY = (
    "What a wonderful, happy day.",
    "I love this, it is delightful.",
    "Great news, we are thrilled!",
)
GRIEF = (
    "What a terrible, sad day.",
    "I hate this, it is dreadful.",
    "Awful news, we are heartbroken.",
)


@dataclass
class Bench:
    """The loaded model, its Steerer, and concept vectors captured on demand."""

    loaded: Any
    steerer: Any
    _vectors: dict[int, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, model: str | None, gguf_file: str | None, device: str | None) -> Bench:
        from steering import load_model, steerer_for

        started = time.perf_counter()
        loaded = load_model(model, gguf_file, device)
        log(f"loaded {loaded.name} in {time.perf_counter() - started:.1f} s")
        steerer = steerer_for(loaded.model, loaded.tokenizer, loaded.name)
        steerer.reset()
        return cls(loaded, steerer)

    @property
    def num_layers(self) -> int:
        return int(self.steerer.info.num_layers)

    def vector(self, layer: int, alpha: float) -> Any:
        """The joy-minus-grief vector captured at `layer`, scaled by `alpha`."""
        from steering import capture_vector

        if layer not in self._vectors:
            self._vectors[layer] = capture_vector(self.steerer, JOY, layer, 1.0, GRIEF)
        return self._vectors[layer].with_alpha(alpha)
