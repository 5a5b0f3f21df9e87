"""Turning concept prompts into a steering vector, and moving one to another layer."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from steering.engine import Steerer
from steering.extract import VectorSource
from steering.vector import SteeringVector, check_alpha, check_layer


def split_prompts(text: str | None) -> list[str]:
    """One prompt per non-blank line."""
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


def capture_vector(
    steerer: Steerer,
    prompts: Sequence[str],
    layer: int,
    alpha: float,
    contrast_prompts: Sequence[str] = (),
) -> SteeringVector:
    """Capture V = mean(prompts) - mean(contrast_prompts) at `layer` (method
    `mean_diff`), or the plain mean (`mean`) without contrast prompts.

    Everything is checked before the model runs; the model's active vectors
    are not changed.
    """
    source = VectorSource.from_prompts(prompts, contrast_prompts)
    return capture(steerer, source, layer, alpha)


def capture(
    steerer: Steerer, source: VectorSource, layer: int, alpha: float
) -> SteeringVector:
    """Run `source`'s extraction method at `layer` and wrap the direction as a
    new vector (a new id), calibrated with the layer's typical state norm."""
    layer = check_layer(layer, steerer.info.num_layers)
    alpha = check_alpha(alpha)
    direction = source.direction(steerer, layer)
    return SteeringVector(
        layer=layer,
        alpha=alpha,
        direction=direction,
        source=source,
        layer_norm=steerer.layer_norm(layer),
    )


def recapture(steerer: Steerer, vector: SteeringVector, layer: int) -> SteeringVector:
    """The same vector (same id, alpha, method and inputs) at another layer:
    a direction only means something at the layer it came from, so the
    vector's own method runs again there (from the activations the Steerer
    kept, so no forward pass when its prompts were captured this session).
    The alpha is kept, so the strength follows the new direction and layer."""
    if layer == vector.layer:
        return vector
    layer = check_layer(layer, steerer.info.num_layers)
    return dataclasses.replace(
        vector,
        layer=layer,
        direction=vector.source.direction(steerer, layer),
        layer_norm=steerer.layer_norm(layer),
    )
