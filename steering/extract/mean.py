"""`mean`: the plain mean activation of the concept prompts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from steering.extract.base import (
    CONCEPT_MISSING,
    PROMPTS,
    Activations,
    mean_at,
    only_keys,
    prompt_tuple,
)


class Mean:
    """V = mean(prompts). Useful alone only with a model whose mean activation
    is small; usually a contrast (`mean_diff`) removes what every text shares."""

    name = "mean"

    def check(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        only_keys(self.name, inputs, (PROMPTS,))
        return {PROMPTS: prompt_tuple(inputs, PROMPTS, CONCEPT_MISSING)}

    def direction(
        self, activations: Activations, inputs: Mapping[str, Any], layer: int
    ) -> torch.Tensor:
        return mean_at(activations, inputs[PROMPTS], layer)


METHOD = Mean()
