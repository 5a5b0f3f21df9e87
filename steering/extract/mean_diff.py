"""`mean_diff`: difference of means, concept prompts minus contrast prompts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from steering.extract.base import (
    CONCEPT_MISSING,
    CONTRAST_PROMPTS,
    PROMPTS,
    Activations,
    mean_at,
    only_keys,
    prompt_tuple,
)


class MeanDiff:
    """V = mean(prompts) - mean(contrast_prompts): what the concept adds over
    its opposite, with what all text shares cancelled out."""

    name = "mean_diff"

    def check(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        only_keys(self.name, inputs, (PROMPTS, CONTRAST_PROMPTS))
        return {
            PROMPTS: prompt_tuple(inputs, PROMPTS, CONCEPT_MISSING),
            CONTRAST_PROMPTS: prompt_tuple(
                inputs, CONTRAST_PROMPTS, "Enter at least one contrast prompt (one per line)."
            ),
        }

    def direction(
        self, activations: Activations, inputs: Mapping[str, Any], layer: int
    ) -> torch.Tensor:
        return mean_at(activations, inputs[PROMPTS], layer) - mean_at(
            activations, inputs[CONTRAST_PROMPTS], layer
        )


METHOD = MeanDiff()
