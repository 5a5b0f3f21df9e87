"""Turning concept prompts into a steering vector, and moving one to another layer."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Sequence

import torch

from steering.activations import CaptureProgress
from steering.budget import reads_of
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
    on_progress: CaptureProgress | None = None,
    cancel: threading.Event | None = None,
) -> SteeringVector:
    """Capture V = mean(prompts) - mean(contrast_prompts) at `layer` (method
    `mean_diff`), or the plain mean (`mean`) without contrast prompts.

    Everything is checked before the model runs; the model's active vectors
    are not changed. `on_progress` and `cancel`: see `capture`.
    """
    source = VectorSource.from_prompts(prompts, contrast_prompts)
    return capture(steerer, source, layer, alpha, on_progress, cancel)


def capture(
    steerer: Steerer,
    source: VectorSource,
    layer: int,
    alpha: float,
    on_progress: CaptureProgress | None = None,
    cancel: threading.Event | None = None,
) -> SteeringVector:
    """Run `source`'s extraction method at `layer` and wrap the direction as a
    new vector (a new id), calibrated with the layer's typical state norm.

    `on_progress(done, total)` counts the prompts of every list the method
    reads (concept, then contrast); a set `cancel` stops the capture with
    CaptureCancelled, keeping nothing."""
    layer = check_layer(layer, steerer.info.num_layers)
    alpha = check_alpha(alpha)
    info = steerer.info
    reads = reads_of(source, info.num_layers, info.hidden_size)
    total = sum(map(len, reads.prompt_lists)) + sum(map(len, reads.pair_lists))
    activations = _Watched(steerer, on_progress, cancel, total)
    direction = source.direction(activations, layer)
    return SteeringVector(
        layer=layer,
        alpha=alpha,
        direction=direction,
        source=source,
        layer_norm=steerer.layer_norm(layer),
    )


class _Watched:
    """The Steerer's activations, with progress counted over every prompt list
    a method asks for, and one cancel event for them all."""

    def __init__(
        self,
        steerer: Steerer,
        on_progress: CaptureProgress | None,
        cancel: threading.Event | None,
        total: int,
    ) -> None:
        self.steerer, self.on_progress, self.cancel = steerer, on_progress, cancel
        self.total = max(total, 1)
        self.done = 0

    def _report(self, done: int, _total: int) -> None:
        if self.on_progress is not None:
            self.on_progress(min(self.done + done, self.total), self.total)

    def _reporter(self) -> CaptureProgress | None:
        # None: the Steerer reports to the running job, if any (Steerer.controlled)
        return self._report if self.on_progress is not None else None

    def answer_activations(self, pairs: Sequence[tuple[str, str]]) -> torch.Tensor:
        result = self.steerer.answer_activations(pairs, self._reporter(), self.cancel)
        self.done += len(pairs)
        self._report(0, self.total)
        return result

    def prompt_activations(self, prompts: Sequence[str]) -> torch.Tensor:
        result = self.steerer.prompt_activations(prompts, self._reporter(), self.cancel)
        self.done += len(prompts)
        self._report(0, self.total)  # also when the prompts were cached
        return result


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
