"""The search space: a particle's position row <-> one layer and one alpha per
selected vector.

A row holds one (layer, coefficient) pair per vector: `[layer_0, c_0, layer_1,
c_1, ...]`. The coefficient is the raw alpha, or with `unit="strength"` the
strength (alpha x |V| / the layer's mean hidden-state norm over the neutral
set, `SteeringVector.strength`): the same range then means the same push at
every layer and for every vector, and the run turns each decoded strength
into the alpha of that vector at that layer (`SearchSpace.to_alphas`,
done by `optimize.run.optimization`, which has the vectors), so every
setting that is scored, cached and reported holds real alphas. Layers are
continuous to the swarm and whole numbers to the model; every conversion
goes through `round_half_away`, so a position always decodes to the same
setting, and the setting (not the raw position) is what is scored, cached
and reported.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from optimize.config.table import BY_NAME, default
from steering.errors import InvalidInputError
from steering.validate import number
from steering.vector import MAX_ABS_ALPHA

ALPHA, STRENGTH = "alpha", "strength"
UNITS = (ALPHA, STRENGTH)
# Strengths are rounded to this many decimals before they become alphas
# (a 0.8 wide range in 800 steps, like alpha's default).
STRENGTH_DECIMALS = 3

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
    """Bounds shared by every selected vector: a whole-layer range and a
    coefficient range, both inclusive. With `unit="alpha"` (what a space built
    with only alpha bounds, and every result file from before the unit,
    means) the coefficient is the raw alpha in `alpha_min..alpha_max`, rounded
    to `alpha_decimals` places; with `unit="strength"` it is the strength in
    `strength_min..strength_max`, rounded to STRENGTH_DECIMALS, and the run
    converts it to each vector's alpha at the setting's layer (`to_alphas`),
    rounded to `alpha_decimals`. The form and CLI default to strength
    (optimize/config/table.py).

    The layer range is checked against the model by `check_model` (which
    `run_optimization` calls), since the space itself does not know the model.
    """

    layer_min: int
    layer_max: int
    alpha_min: float = default("alpha_min")
    alpha_max: float = default("alpha_max")
    alpha_decimals: int = default("alpha_decimals")
    unit: str = ALPHA
    strength_min: float = default("strength_min")
    strength_max: float = default("strength_max")

    def __post_init__(self) -> None:
        layer_min = BY_NAME["layer_min"].check(self.layer_min)
        layer_max = BY_NAME["layer_max"].check(self.layer_max)
        if layer_max < layer_min:
            raise InvalidInputError(
                f"The layer range is empty: the highest layer ({layer_max}) is below "
                f"the lowest ({layer_min})."
            )
        unit = BY_NAME["unit"].check(self.unit)
        # a vector's own limit on alpha (steering.vector), beyond the table's
        alpha_min, alpha_max = (
            number(BY_NAME[name].noun, getattr(self, name), -MAX_ABS_ALPHA, MAX_ABS_ALPHA)
            for name in ("alpha_min", "alpha_max")
        )
        if unit == ALPHA and not alpha_min < alpha_max:
            raise InvalidInputError(
                f"The alpha range must have the lowest alpha below the highest, "
                f"got {alpha_min:g} to {alpha_max:g}."
            )
        strength_min, strength_max = (
            BY_NAME[name].check(getattr(self, name)) for name in ("strength_min", "strength_max")
        )
        if unit == STRENGTH and not strength_min < strength_max:
            raise InvalidInputError(
                f"The strength range must have the lowest strength below the highest, "
                f"got {strength_min:g} to {strength_max:g}."
            )
        decimals = BY_NAME["alpha_decimals"].check(self.alpha_decimals)
        object.__setattr__(self, "layer_min", layer_min)
        object.__setattr__(self, "layer_max", layer_max)
        object.__setattr__(self, "alpha_min", alpha_min)
        object.__setattr__(self, "alpha_max", alpha_max)
        object.__setattr__(self, "alpha_decimals", decimals)
        object.__setattr__(self, "unit", unit)
        object.__setattr__(self, "strength_min", strength_min)
        object.__setattr__(self, "strength_max", strength_max)

    @property
    def low(self) -> float:
        """The lowest coefficient searched, in `unit`."""
        return self.strength_min if self.unit == STRENGTH else self.alpha_min

    @property
    def high(self) -> float:
        """The highest coefficient searched, in `unit`."""
        return self.strength_max if self.unit == STRENGTH else self.alpha_max

    def describe(self) -> str:
        """The coefficient range in words, e.g. "strength -0.4 to 0.4"."""
        return f"{self.unit} {self.low:g} to {self.high:g}"

    def check_model(self, num_layers: int, model_name: str = "the model") -> None:
        """Raise InvalidInputError unless the layer range lies inside the model."""
        if self.layer_max >= num_layers:
            raise InvalidInputError(
                f"The layer range {self.layer_min}-{self.layer_max} is outside "
                f"{model_name}, which has layers 0 to {num_layers - 1}."
            )

    def bounds(self, n_vectors: int) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper bounds of a position row, for pyswarms."""
        lower = [self.layer_min - _LAYER_MARGIN, self.low] * n_vectors
        upper = [self.layer_max + _LAYER_MARGIN, self.high] * n_vectors
        return np.asarray(lower, dtype=float), np.asarray(upper, dtype=float)

    def layer(self, value: float) -> int:
        """The whole layer a continuous coordinate stands for, inside the range."""
        layer = int(round_half_away(value))
        return min(max(layer, self.layer_min), self.layer_max)

    def alpha(self, value: float) -> float:
        """The coefficient (in `unit`) a continuous coordinate stands for:
        rounded, inside the range."""
        decimals = STRENGTH_DECIMALS if self.unit == STRENGTH else self.alpha_decimals
        coefficient = round_half_away(value, decimals)
        return min(max(coefficient, self.low), self.high)

    def decode(self, row: Sequence[float] | np.ndarray) -> Setting:
        """The setting a position row stands for (coefficients in `unit`)."""
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

    def to_alphas(self, setting: Setting, scale: Callable[[int, int], float]) -> Setting:
        """`setting` with strengths turned into alphas (unchanged in unit
        alpha): `scale(i, layer)` is the alpha of strength 1 for the i-th
        vector at `layer` (its layer norm / |V| there). Alphas are rounded to
        `alpha_decimals` and kept within a vector's limit on alpha."""
        if self.unit == ALPHA:
            return setting
        alphas = []
        for i, (layer, strength) in enumerate(zip(setting.layers, setting.alphas, strict=True)):
            alpha = round_half_away(strength * scale(i, layer), self.alpha_decimals)
            alphas.append(min(max(alpha, -MAX_ABS_ALPHA), MAX_ABS_ALPHA))
        return Setting(setting.layers, tuple(alphas))
