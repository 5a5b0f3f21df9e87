"""The steering vector: plain data, validated when it is built."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone

import torch

from steering.errors import InvalidInputError

# Beyond this the residual stream is swamped and the model only babbles;
# useful coefficients for a difference-of-means vector are around 0.5-10.
MAX_ABS_COEFF = 100.0


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def check_coeff(coeff: float) -> float:
    """Return `coeff` as a float, or raise InvalidInputError."""
    try:
        value = float(coeff)
    except (TypeError, ValueError):
        raise InvalidInputError(f"Coefficient must be a number, got {coeff!r}.") from None
    if not math.isfinite(value) or abs(value) > MAX_ABS_COEFF:
        raise InvalidInputError(
            f"Coefficient must be a finite number between {-MAX_ABS_COEFF:g} "
            f"and {MAX_ABS_COEFF:g}, got {coeff!r}."
        )
    return value


def check_layer(layer: int, num_layers: int) -> int:
    """Return `layer` as an int in [0, num_layers), or raise InvalidInputError."""
    if isinstance(layer, float) and layer.is_integer():
        layer = int(layer)
    if not isinstance(layer, int) or isinstance(layer, bool):
        raise InvalidInputError(f"Layer must be a whole number, got {layer!r}.")
    if not 0 <= layer < num_layers:
        raise InvalidInputError(
            f"Layer {layer} is out of range: this model has layers 0 to {num_layers - 1}."
        )
    return layer


@dataclass(frozen=True, eq=False)
class SteeringVector:
    """A direction V added as H + coeff * V to the hidden state entering `layer`.

    `direction` is the raw mean activation of `prompts` (minus that of
    `contrast_prompts` when there are any), captured at `layer`, float32 on CPU.
    """

    layer: int
    coeff: float
    direction: torch.Tensor
    prompts: tuple[str, ...]
    contrast_prompts: tuple[str, ...] = ()
    created_at: str = field(default_factory=_now)

    def __post_init__(self) -> None:
        if not isinstance(self.layer, int) or self.layer < 0:
            raise InvalidInputError(f"Layer must be a whole number >= 0, got {self.layer!r}.")
        object.__setattr__(self, "coeff", check_coeff(self.coeff))
        if not isinstance(self.direction, torch.Tensor) or self.direction.dim() != 1:
            raise InvalidInputError("A steering direction must be a 1-D tensor.")
        if not torch.isfinite(self.direction).all():
            raise InvalidInputError("A steering direction must be finite (no NaN or inf).")
        object.__setattr__(
            self, "direction", self.direction.detach().to("cpu", torch.float32)
        )
        object.__setattr__(self, "prompts", tuple(self.prompts))
        object.__setattr__(self, "contrast_prompts", tuple(self.contrast_prompts))
        if not self.prompts:
            raise InvalidInputError("A steering vector needs at least one concept prompt.")

    @property
    def hidden_size(self) -> int:
        return int(self.direction.shape[0])

    @property
    def norm(self) -> float:
        """Euclidean norm of the direction (before the coefficient)."""
        return float(self.direction.norm())

    def summary(self, width: int = 60) -> str:
        """The prompts in one short line, for tables."""
        text = " | ".join(self.prompts)
        if self.contrast_prompts:
            text += "  vs  " + " | ".join(self.contrast_prompts)
        return text if len(text) <= width else text[: width - 1] + "…"

    def with_coeff(self, coeff: float) -> SteeringVector:
        return dataclasses.replace(self, coeff=coeff)

    def same_as(self, other: SteeringVector) -> bool:
        """True when both vectors steer identically and came from the same prompts."""
        return (
            self.layer == other.layer
            and self.coeff == other.coeff
            and self.prompts == other.prompts
            and self.contrast_prompts == other.contrast_prompts
            and torch.equal(self.direction, other.direction)
        )
