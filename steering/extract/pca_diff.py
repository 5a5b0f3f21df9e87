"""`pca_diff`: repeng's first principal component of paired differences."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from steering.errors import InvalidInputError
from steering.extract.base import (
    CONCEPT_MISSING,
    CONTRAST_PROMPTS,
    PROMPTS,
    Activations,
    only_keys,
    pca_direction,
    prompt_tuple,
)


class PcaDiff:
    """Prompt i and contrast prompt i are a pair (the same text with the
    concept and with its opposite); V is the first principal component of the
    pairs' differences, pointing towards the concept. Where the difference of
    means takes what the pairs share on average, this takes the one direction
    along which they differ most, which ignores a few off-topic pairs."""

    name = "pca_diff"

    def check(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        only_keys(self.name, inputs, (PROMPTS, CONTRAST_PROMPTS))
        prompts = prompt_tuple(inputs, PROMPTS, CONCEPT_MISSING)
        contrast = prompt_tuple(
            inputs, CONTRAST_PROMPTS, "Enter one contrast prompt per concept prompt."
        )
        if len(prompts) != len(contrast) or len(prompts) < 2:
            raise InvalidInputError(
                "PCA of paired differences pairs concept prompt i with contrast prompt i: "
                f"give the same number of each, at least 2 (got {len(prompts)} and "
                f"{len(contrast)})."
            )
        return {PROMPTS: prompts, CONTRAST_PROMPTS: contrast}

    def direction(
        self, activations: Activations, inputs: Mapping[str, Any], layer: int
    ) -> torch.Tensor:
        concept = activations.prompt_activations(inputs[PROMPTS])[:, layer]
        contrast = activations.prompt_activations(inputs[CONTRAST_PROMPTS])[:, layer]
        return pca_direction(concept - contrast)


METHOD = PcaDiff()
