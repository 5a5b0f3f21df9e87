"""`gguf`: a direction read from a GGUF control vector file (steering/gguf.py).

Nothing is extracted: the file holds the direction for one layer, so the
vector records where it came from (the file name and the tensor) and cannot
be moved to another layer, where that direction means nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from steering.errors import InvalidInputError
from steering.extract.base import Activations, only_keys

FILE = "file"
TENSOR = "tensor"


class Gguf:
    """Records the file and tensor a direction was read from."""

    name = "gguf"

    def check(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        only_keys(self.name, inputs, (FILE, TENSOR))
        checked = {}
        for key in (FILE, TENSOR):
            value = inputs.get(key)
            if not isinstance(value, str) or not value.strip():
                raise InvalidInputError(f"A GGUF vector records its {key} name, got {value!r}.")
            checked[key] = value.strip()
        return checked

    def direction(
        self, activations: Activations, inputs: Mapping[str, Any], layer: int
    ) -> torch.Tensor:
        raise InvalidInputError(
            f"This vector is {inputs[TENSOR]} of {inputs[FILE]}, a direction made for its "
            "own layer; it cannot be moved to another layer. Import the file again, or "
            "capture a vector at that layer."
        )


METHOD = Gguf()
