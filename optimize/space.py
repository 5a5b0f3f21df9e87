"""The search space: a particle's position row <-> one layer and one alpha per
selected vector.

A row holds one (layer, alpha) pair per vector: `[layer_0, alpha_0, layer_1,
alpha_1, ...]`. Layers are continuous to the swarm and whole numbers to the
model; every conversion goes through `round_half_away`, so a position always
decodes to the same setting, and the setting (not the raw position) is what is
scored, cached and reported.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from optimize.settings import BY_NAME, default
from steering.errors import InvalidInputError
from steering.validate import number
from steering.vector import MAX_ABS_ALPHA

# Continuous layer bounds reach this far past the outer whole layers, so each
# whole layer in the range owns an interval of the same width (1.0) and the end
# layers are not half as likely to be visited as the inner ones.
_LAYER_MARGIN = 0.499

Key = tuple[tuple[int, ...], tuple[float, ...]]


def round_half_away(value: float, decimals: int = 0) -> float:
    """Round to `decimals` places, halves away from zero (2.5 -> 3, -2.5 -> -3).

    The one rounding rule of the optimizer. Never returns -0.0.
    """
    scale = 10.0**decimals
    rounded = math.copysign(math.floor(abs(float(value)) * scale + 0.5), value) / scale
    return rounded + 0.0  # -0.0 -> 0.0, so equal settings have equal keys


@dataclass(frozen=True)
class Setting:
    """One layer and one alpha (steering coefficient) per selected vector."""

    layers: tuple[int, ...]
    alphas: tuple[float, ...]

    @property
    def key(self) -> Key:
        """What the fitness cache is keyed on."""
        return (self.layers, self.alphas)


@dataclass(frozen=True)
class SearchSpace:
    """Bounds shared by every selected vector: a whole-layer range and an alpha
    range, both inclusive. Alphas are rounded to `alpha_decimals` places.

    The layer range is checked against the model by `check_model` (which
    `run_optimization` calls), since the space itself does not know the model.
    """

    layer_min: int
    layer_max: int
    alpha_min: float
    alpha_max: float
    alpha_decimals: int = default("alpha_decimals")

    def __post_init__(self) -> None:
        layer_min = BY_NAME["layer_min"].check(self.layer_min)
        layer_max = BY_NAME["layer_max"].check(self.layer_max)
        if layer_max < layer_min:
            raise InvalidInputError(
                f"The layer range is empty: the highest layer ({layer_max}) is below "
                f"the lowest ({layer_min})."
            )
        # a vector's own limit on alpha (steering.vector), beyond the table's
        alpha_min, alpha_max = (
            number(BY_NAME[name].noun, getattr(self, name), -MAX_ABS_ALPHA, MAX_ABS_ALPHA)
            for name in ("alpha_min", "alpha_max")
        )
        if not alpha_min < alpha_max:
            raise InvalidInputError(
                f"The alpha range must have the lowest alpha below the highest, "
                f"got {alpha_min:g} to {alpha_max:g}."
            )
        decimals = BY_NAME["alpha_decimals"].check(self.alpha_decimals)
        object.__setattr__(self, "layer_min", layer_min)
        object.__setattr__(self, "layer_max", layer_max)
        object.__setattr__(self, "alpha_min", alpha_min)
        object.__setattr__(self, "alpha_max", alpha_max)
        object.__setattr__(self, "alpha_decimals", decimals)

    def check_model(self, num_layers: int, model_name: str = "the model") -> None:
        """Raise InvalidInputError unless the layer range lies inside the model."""
        if self.layer_max >= num_layers:
            raise InvalidInputError(
                f"The layer range {self.layer_min}-{self.layer_max} is outside "
                f"{model_name}, which has layers 0 to {num_layers - 1}."
            )

    def bounds(self, n_vectors: int) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper bounds of a position row, for pyswarms."""
        lower = [self.layer_min - _LAYER_MARGIN, self.alpha_min] * n_vectors
        upper = [self.layer_max + _LAYER_MARGIN, self.alpha_max] * n_vectors
        return np.asarray(lower, dtype=float), np.asarray(upper, dtype=float)

    def layer(self, value: float) -> int:
        """The whole layer a continuous coordinate stands for, inside the range."""
        layer = int(round_half_away(value))
        return min(max(layer, self.layer_min), self.layer_max)

    def alpha(self, value: float) -> float:
        """The alpha a continuous coordinate stands for: rounded, inside the range."""
        alpha = round_half_away(value, self.alpha_decimals)
        return min(max(alpha, self.alpha_min), self.alpha_max)

    def decode(self, row: Sequence[float] | np.ndarray) -> Setting:
        """The setting a position row stands for."""
        values = [float(v) for v in np.asarray(row, dtype=float).ravel()]
        if not values or len(values) % 2:
            raise InvalidInputError(
                f"A position row needs a (layer, alpha) pair per vector, got {len(values)} values."
            )
        return Setting(
            layers=tuple(self.layer(v) for v in values[0::2]),
            alphas=tuple(self.alpha(v) for v in values[1::2]),
        )

    def encode(self, setting: Setting) -> np.ndarray:
        """A position row that decodes to `setting` (for seeding a swarm)."""
        row: list[float] = []
        for layer, alpha in zip(setting.layers, setting.alphas, strict=True):
            row += [float(layer), float(alpha)]
        return np.asarray(row, dtype=float)
