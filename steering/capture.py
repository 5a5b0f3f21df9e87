"""Turning concept prompts into a steering vector."""

from __future__ import annotations

from collections.abc import Sequence

from steering.engine import Steerer
from steering.errors import InvalidInputError
from steering.vector import SteeringVector, check_coeff, check_layer


def split_prompts(text: str | None) -> list[str]:
    """One prompt per non-blank line."""
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


def capture_vector(
    steerer: Steerer,
    prompts: Sequence[str],
    layer: int,
    coeff: float,
    contrast_prompts: Sequence[str] = (),
) -> SteeringVector:
    """Capture V = mean(prompts) - mean(contrast_prompts) at `layer`.

    Without contrast prompts V is the plain mean. Everything is checked
    before the model runs; the model's active vectors are not changed.
    """
    prompts = [p.strip() for p in prompts if p and p.strip()]
    contrast = [p.strip() for p in contrast_prompts if p and p.strip()]
    if not prompts:
        raise InvalidInputError("Enter at least one concept prompt (one per line).")
    layer = check_layer(layer, steerer.info.num_layers)
    coeff = check_coeff(coeff)
    direction = steerer.capture_mean(prompts, layer)
    if contrast:
        direction = direction - steerer.capture_mean(contrast, layer)
    return SteeringVector(
        layer=layer,
        coeff=coeff,
        direction=direction,
        prompts=tuple(prompts),
        contrast_prompts=tuple(contrast),
    )


def recapture(steerer: Steerer, vector: SteeringVector, layer: int) -> SteeringVector:
    """The same concept captured at another layer (a direction only means
    something at the layer it came from)."""
    if layer == vector.layer:
        return vector
    return capture_vector(
        steerer, vector.prompts, layer, vector.coeff, vector.contrast_prompts
    )
