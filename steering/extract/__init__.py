"""Extraction methods: how a direction is made, one module per method.

A new method is one module defining an object with `name`, `check` and
`direction` (see `base.ExtractionMethod`) plus one `register(...)` line below.
Vectors record their method and inputs in a `VectorSource`, so moving a vector
to another layer re-runs its own method, and files keep the recipe.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import torch

from steering.errors import InvalidInputError
from steering.extract import gguf, mean, mean_diff, pca_diff, task_pairs
from steering.extract.base import CONTRAST_PROMPTS, PROMPTS, Activations, ExtractionMethod

# name -> method. Filled here at import and read everywhere else; tests that
# add a toy method put it in with monkeypatch.setitem so it is gone after.
METHODS: dict[str, ExtractionMethod] = {}


def register(method: ExtractionMethod) -> ExtractionMethod:
    """Make `method` available by its name."""
    METHODS[method.name] = method
    return method


register(mean.METHOD)
register(mean_diff.METHOD)
register(gguf.METHOD)
register(pca_diff.METHOD)
register(task_pairs.METHOD)


def get_method(name: str) -> ExtractionMethod:
    """The method called `name`, or InvalidInputError naming the valid ones."""
    method = METHODS.get(name) if isinstance(name, str) else None
    if method is None:
        raise InvalidInputError(
            f"Unknown extraction method {name!r}; valid methods: {', '.join(sorted(METHODS))}."
        )
    return method


def _freeze(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, Mapping):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    return value


@dataclass(frozen=True)
class VectorSource:
    """What made a direction: a registered method's name and its checked inputs.

    `inputs` is read-only and JSON-safe (strings, numbers, tuples, mappings),
    so it goes into a vector file as is and compares by value.
    """

    method: str
    inputs: Mapping[str, Any]

    def __post_init__(self) -> None:
        checker = get_method(self.method)
        if not isinstance(self.inputs, Mapping):
            raise InvalidInputError("Extraction inputs must be a mapping of names to values.")
        checked = checker.check(self.inputs)
        try:
            json.dumps(checked)
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"Extraction inputs must be plain data: {exc}.") from None
        object.__setattr__(self, "inputs", _freeze(checked))

    def __hash__(self) -> int:
        return hash((self.method, json.dumps(self.to_json(), sort_keys=True)))

    @classmethod
    def from_prompts(
        cls, prompts: Sequence[str], contrast_prompts: Sequence[str] = ()
    ) -> VectorSource:
        """`mean_diff` when there are contrast prompts, else `mean` (what the
        Steering tab and the CLI do)."""
        contrast = [p for p in contrast_prompts if p and p.strip()]
        if contrast:
            return cls("mean_diff", {PROMPTS: tuple(prompts), CONTRAST_PROMPTS: tuple(contrast)})
        return cls("mean", {PROMPTS: tuple(prompts)})

    @property
    def prompts(self) -> tuple[str, ...]:
        return tuple(self.inputs.get(PROMPTS, ()))

    @property
    def contrast_prompts(self) -> tuple[str, ...]:
        return tuple(self.inputs.get(CONTRAST_PROMPTS, ()))

    def describe(self) -> str:
        """What made the direction, in one line for people: what the method's
        own `describe` says, else the prompts, else (a method without prompts,
        such as an imported GGUF direction) its inputs."""
        describe = getattr(get_method(self.method), "describe", None)
        if describe is not None:
            return str(describe(self.inputs))
        text = " | ".join(self.prompts) or f"{self.method}: " + " ".join(
            str(value) for value in self.inputs.values()
        )
        if self.contrast_prompts:
            text += "  vs  " + " | ".join(self.contrast_prompts)
        return text

    def direction(self, activations: Activations, layer: int) -> torch.Tensor:
        """Run the method at `layer`."""
        return get_method(self.method).direction(activations, self.inputs, layer)

    def to_json(self) -> dict[str, Any]:
        return {"method": self.method, "inputs": _thaw(self.inputs)}


def _thaw(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    return value


__all__ = [
    "METHODS",
    "Activations",
    "ExtractionMethod",
    "VectorSource",
    "get_method",
    "register",
]
