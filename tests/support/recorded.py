"""The search histories recorded from the pyswarms loop before the ask/tell
redesign (tests/data/pso_history.json), and what turns a run into them."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

RECORDED: dict[str, Any] = json.loads(
    (Path(__file__).resolve().parents[1] / "data" / "pso_history.json").read_text()
)
SPHERE: dict[str, Any] = RECORDED["sphere"]


def recorded_pso(case: dict[str, Any]) -> Any:
    """The swarm of a recorded case: its size and seed, and pyswarms' own
    start (no velocity limit), as the recording's code had it."""
    from optimize import PsoConfig

    return PsoConfig(
        particles=case["particles"], iterations=case["iterations"], seed=case["seed"],
        velocity_limit=0.0,
    )


def history_rows(history: Any) -> list[dict[str, Any]]:
    """A history as the recording writes it."""
    return [
        {
            "iteration": e.iteration,
            "particle": e.particle,
            "layers": list(e.layers),
            "alphas": list(e.alphas),
            "score": None if math.isnan(e.score) else e.score,
            "stderr": None if math.isnan(e.stderr) else e.stderr,
            "cached": e.cached,
        }
        for e in history
    ]


def sphere_score(setting: Any, nan_layer: int | None) -> tuple[float, float]:
    """Higher is better; the recorded score function, unchanged."""
    if nan_layer is not None and setting.layers[0] == nan_layer:
        return math.nan, math.nan
    distance = sum(
        (layer - t) ** 2 + (alpha - u) ** 2
        for layer, alpha, (t, u) in zip(  # as recorded: the targets a setting has vectors for
            setting.layers, setting.alphas, SPHERE["targets"], strict=False
        )
    )
    return -distance, 0.001 * sum(setting.layers)
