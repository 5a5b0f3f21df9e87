"""The steering vector: plain data, validated when it is built."""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

import torch

from steering import validate
from steering.errors import InvalidInputError
from steering.extract import VectorSource
from steering.limits import (
    MAX_ABS_ALPHA,
    MAX_ABS_STRENGTH,
    MAX_DIRECTION_NORM,
    MAX_REQUEST_STRENGTH,
)

__all__ = [
    "MAX_ABS_ALPHA", "SteeringVector", "check_alpha", "check_layer", "check_strength",
    "new_vector_id",
]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def new_vector_id() -> str:
    """A short random id (12 hex digits of a uuid4): unique enough for the
    vectors of one session or file, short enough to read in a log."""
    return uuid.uuid4().hex[:12]


def check_alpha(alpha: float) -> float:
    """Return `alpha` as a float, or raise InvalidInputError."""
    value = validate.number("Alpha", alpha)
    if abs(value) > MAX_ABS_ALPHA:
        raise InvalidInputError(
            f"Alpha must be a finite number between {-MAX_ABS_ALPHA:g} "
            f"and {MAX_ABS_ALPHA:g}, got {alpha!r}."
        )
    return value


def check_strength(strength: float) -> float:
    """Return `strength` as a float, or raise InvalidInputError."""
    value = validate.number("Strength", strength)
    if abs(value) > MAX_REQUEST_STRENGTH:
        raise InvalidInputError(
            f"Strength must be a finite number between {-MAX_REQUEST_STRENGTH:g} "
            f"and {MAX_REQUEST_STRENGTH:g}, got {strength!r}."
        )
    return value


def check_layer(layer: int, num_layers: int) -> int:
    """Return `layer` as an int in [0, num_layers), or raise InvalidInputError."""
    layer = validate.whole("Layer", layer)
    if not 0 <= layer < num_layers:
        raise InvalidInputError(
            f"Layer {layer} is out of range: this model has layers 0 to {num_layers - 1}."
        )
    return layer


@dataclass(frozen=True, eq=False)
class SteeringVector:
    """A direction V added as H + alpha * V to the hidden state entering `layer`.

    `direction` is what `source.method` extracted from `source.inputs` at
    `layer`, float32 on CPU. `id` names the user's vector for its whole life:
    a copy at another layer (`recapture`) or with another alpha
    (`with_alpha`) keeps it, because it is still that vector; labels shown to
    people are built from it and never parsed back.

    `layer_norm` is the mean norm of the hidden states entering `layer` over
    the neutral text set (`Steerer.layer_norms`), recorded when the vector was
    made: it gives the raw alpha a meaning that does not depend on the layer,
    the model or the vector's own norm, the `strength` (the added vector's
    norm as a share of that typical state norm). None for vectors from before
    the unit (their strength is unknown until recaptured).
    """

    layer: int
    alpha: float
    direction: torch.Tensor
    source: VectorSource
    created_at: str = field(default_factory=_now)
    id: str = field(default_factory=new_vector_id)
    layer_norm: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.layer, int) or isinstance(self.layer, bool) or self.layer < 0:
            raise InvalidInputError(f"Layer must be a whole number >= 0, got {self.layer!r}.")
        object.__setattr__(self, "alpha", check_alpha(self.alpha))
        if not isinstance(self.direction, torch.Tensor) or self.direction.dim() != 1:
            raise InvalidInputError("A steering direction must be a 1-D tensor.")
        if not torch.isfinite(self.direction).all():
            raise InvalidInputError("A steering direction must be finite (no NaN or inf).")
        object.__setattr__(
            self, "direction", self.direction.detach().to("cpu", torch.float32)
        )
        # In float64: a float32 norm of values near 3e38 overflows to inf.
        norm = float(self.direction.double().norm())
        if not norm <= MAX_DIRECTION_NORM:
            raise InvalidInputError(
                f"A steering direction's norm must be at most {MAX_DIRECTION_NORM:g}, got "
                f"{norm:.3g}: a hidden state is never that long, so the model would only "
                "give empty or broken replies."
            )
        if not isinstance(self.source, VectorSource):
            raise InvalidInputError("A steering vector needs a VectorSource (method and inputs).")
        if not isinstance(self.id, str) or not self.id.strip():
            raise InvalidInputError(f"A vector id must be a non-empty string, got {self.id!r}.")
        if self.layer_norm is not None:
            norm = validate.number("The layer norm", self.layer_norm)
            if not norm > 0:
                raise InvalidInputError(f"A layer norm must be above 0, got {norm!r}.")
            object.__setattr__(self, "layer_norm", norm)
            strength = self.strength
            if strength is None or not abs(strength) <= MAX_ABS_STRENGTH:
                raise InvalidInputError(
                    f"The vector's strength (|alpha × V| / layer norm {norm:.3g}) would be "
                    f"{strength:.3g}; a strength is at most {MAX_ABS_STRENGTH:g} "
                    "(1 already makes replies repeat)."
                )

    @property
    def method(self) -> str:
        return self.source.method

    @property
    def prompts(self) -> tuple[str, ...]:
        """The concept prompts (every method has them)."""
        return self.source.prompts

    @property
    def contrast_prompts(self) -> tuple[str, ...]:
        """The contrast prompts, () for a method without them."""
        return self.source.contrast_prompts

    @property
    def hidden_size(self) -> int:
        return int(self.direction.shape[0])

    @property
    def norm(self) -> float:
        """Euclidean norm of the direction (before alpha)."""
        return float(self.direction.norm())

    def summary(self, width: int = 60) -> str:
        """What made the vector in one short line, for tables (the prompts,
        or the method's own description: see `VectorSource.describe`)."""
        text = self.source.describe()
        return text if len(text) <= width else text[: width - 1] + "…"

    @property
    def strength(self) -> float | None:
        """|alpha * V| / layer_norm, signed like alpha: 0.5 adds a vector half as
        long as a typical hidden state at this layer (None: not calibrated)."""
        if self.layer_norm is None:
            return None
        return self.alpha * self.norm / self.layer_norm

    def alpha_for(self, strength: float) -> float:
        """The raw alpha that gives `strength` with this direction and layer.

        Raises InvalidInputError for an uncalibrated vector, or a zero direction."""
        if self.layer_norm is None:
            raise InvalidInputError(
                "This vector has no layer norm to convert a strength with; capture it again."
            )
        if self.norm == 0:
            raise InvalidInputError("The vector's direction is zero, so no alpha gives a strength.")
        return validate.number("Strength", strength) * self.layer_norm / self.norm

    def with_strength(self, strength: float) -> SteeringVector:
        """The same vector with the alpha that gives `strength` (see `strength`)."""
        return dataclasses.replace(self, alpha=self.alpha_for(strength))

    def with_alpha(self, alpha: float) -> SteeringVector:
        """The same vector (same id) with another alpha."""
        return dataclasses.replace(self, alpha=alpha)

    def same_as(self, other: SteeringVector) -> bool:
        """True when both vectors steer identically and came from the same method
        and inputs (ids and creation times may differ)."""
        return (
            self.layer == other.layer
            and self.alpha == other.alpha
            and self.source == other.source
            and self.layer_norm == other.layer_norm
            and torch.equal(self.direction, other.direction)
        )
