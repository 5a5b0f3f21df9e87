"""One scored setting: what every part of a run (search, held-out scoring,
the front, the result file) passes around."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from optimize.config.space import Setting
from optimize.scoring.metrics import TARGET, TARGET_STDERR, Metrics


def finite_or_none(value: float) -> float | None:
    """JSON has no NaN or infinity: they are written as null."""
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class Evaluation:
    """One scored setting.

    `iteration` and `particle` are -1 for the unsteered baseline. `layers` and
    `alphas` hold one entry per selected vector (empty for the baseline).
    `stderr` is NaN when the metric has no standard error. `cached` is True
    when the setting had been scored before in this run (its score is reused
    and nothing was run). `seconds` is the wall time this evaluation took.
    `metrics` holds every metric the fitness reported; its "target" and
    "target_stderr" are always `score` and `stderr`.
    """

    iteration: int
    particle: int
    layers: tuple[int, ...]
    alphas: tuple[float, ...]
    score: float
    stderr: float
    seconds: float
    cached: bool = False
    metrics: Metrics = field(default_factory=Metrics)

    def __post_init__(self) -> None:
        # `score` and `stderr` are the target's truth (so dataclasses.replace
        # of a score also replaces it among the metrics).
        merged = Metrics({**self.metrics, TARGET: self.score, TARGET_STDERR: self.stderr})
        object.__setattr__(self, "metrics", merged)

    @classmethod
    def scored(
        cls,
        iteration: int,
        particle: int,
        setting: Setting,
        metrics: Metrics,
        seconds: float,
        cached: bool = False,
    ) -> Evaluation:
        """The evaluation of `setting` that measured `metrics`."""
        return cls(
            iteration=iteration,
            particle=particle,
            layers=setting.layers,
            alphas=setting.alphas,
            score=metrics.target,
            stderr=metrics.target_stderr,
            seconds=seconds,
            cached=cached,
            metrics=metrics,
        )

    @property
    def setting(self) -> Setting:
        return Setting(self.layers, self.alphas)

    @property
    def is_baseline(self) -> bool:
        return self.iteration < 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "iteration": self.iteration,
            "particle": self.particle,
            "layers": list(self.layers),
            "alphas": list(self.alphas),
            "score": finite_or_none(self.score),
            "stderr": finite_or_none(self.stderr),
            "seconds": self.seconds,
            "cached": self.cached,
            "metrics": self.metrics.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Evaluation:
        score, stderr = data.get("score"), data.get("stderr")
        return cls(
            iteration=int(data["iteration"]),
            particle=int(data["particle"]),
            layers=tuple(int(v) for v in data["layers"]),
            alphas=tuple(float(v) for v in data["alphas"]),
            score=math.nan if score is None else float(score),
            stderr=math.nan if stderr is None else float(stderr),
            seconds=float(data["seconds"]),
            cached=bool(data.get("cached", False)),
            metrics=Metrics.from_dict(data.get("metrics") or {}),
        )


