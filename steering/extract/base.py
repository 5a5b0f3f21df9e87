"""What an extraction method is, and the input checks methods share.

A method turns named inputs (prompts, contrast prompts, later a task) into a
direction at one layer. It reads activations only through `Activations`, so it
never runs the model itself: the Steerer captures every layer in one pass and
keeps the result, and a method asked for another layer costs no forward pass.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import torch

from steering.errors import InvalidInputError
from steering.limits import MAX_PROMPTS_PER_CAPTURE, MAX_TEXT_CHARS, MAX_TOKENS_PER_PROMPT, count
from steering.validate import typed

PROMPTS = "prompts"
CONTRAST_PROMPTS = "contrast_prompts"


class Activations(Protocol):
    """Where a method gets activations from (the Steerer)."""

    def prompt_activations(self, prompts: Sequence[str]) -> torch.Tensor:
        """[len(prompts), num_layers, hidden] float32 on CPU: for each prompt and
        layer, the mean over its tokens (position 0 left out) of the hidden state
        entering that layer, captured unsteered."""
        ...

    def answer_activations(self, pairs: Sequence[tuple[str, str]]) -> torch.Tensor:
        """[len(pairs), num_layers, hidden]: for each (context, answer), the mean
        over the answer's tokens of the state entering each layer, the context
        before it (as lm-eval scores a multiple-choice answer)."""
        ...


class ExtractionMethod(Protocol):
    """One way of making a direction. Register an instance in `steering.extract`."""

    name: str

    def check(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        """The inputs validated and normalised (tuples of stripped strings),
        or InvalidInputError with a message for the user."""
        ...

    def direction(
        self, activations: Activations, inputs: Mapping[str, Any], layer: int
    ) -> torch.Tensor:
        """The direction [hidden] at `layer` from checked `inputs`."""
        ...


def only_keys(method: str, inputs: Mapping[str, Any], allowed: Sequence[str]) -> None:
    """Refuse inputs a method does not use (a typo would otherwise be ignored)."""
    extra = sorted(set(inputs) - set(allowed))
    if extra:
        raise InvalidInputError(
            f"The extraction method {method!r} does not take {', '.join(extra)}; "
            f"it takes {', '.join(allowed)}."
        )


def prompt_tuple(inputs: Mapping[str, Any], key: str, missing: str) -> tuple[str, ...]:
    """`inputs[key]` as a tuple of stripped, non-blank prompts; `missing` is
    the error message when there are none."""
    value = inputs.get(key, ())
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise InvalidInputError(f"{key} must be a list of prompts, got {type(value).__name__}.")
    if len(value) > MAX_PROMPTS_PER_CAPTURE:
        raise InvalidInputError(
            f"A capture takes at most {count(MAX_PROMPTS_PER_CAPTURE)} "
            f"{key.replace('_', ' ')}; got {count(len(value))} "
            "(the cap is in steering/limits.py)."
        )
    prompts = []
    for prompt in value:
        if not isinstance(prompt, str):
            raise InvalidInputError(f"{key} must hold text, got {typed(prompt)}.")
        if len(prompt) > MAX_TEXT_CHARS:
            raise InvalidInputError(
                f"A prompt is {count(len(prompt))} characters long; a capture reads prompts of "
                f"at most {count(MAX_TEXT_CHARS)} characters (and {MAX_TOKENS_PER_PROMPT} "
                f"tokens): {prompt[:60]!r}…"
            )
        if prompt.strip():
            prompts.append(prompt.strip())
    if not prompts:
        raise InvalidInputError(missing)
    return tuple(prompts)


CONCEPT_MISSING = "Enter at least one concept prompt (one per line)."


def mean_at(activations: Activations, prompts: Sequence[str], layer: int) -> torch.Tensor:
    """Mean over prompts of the per-prompt token means at `layer`."""
    return activations.prompt_activations(prompts)[:, layer].mean(dim=0)


def pca_direction(differences: torch.Tensor) -> torch.Tensor:
    """repeng's `pca_diff` on paired differences [pairs, hidden]: the first
    principal component of the (centred) differences, its sign fixed so that
    the differences project positively on it (towards the concept), scaled to
    their mean projection, so its raw alpha is on the scale of a difference of
    means (a unit vector would need alphas a hundred times larger).

    Raises InvalidInputError when the differences have no variance to find a
    component in (fewer than two pairs, or all pairs alike)."""
    if differences.shape[0] < 2:
        raise InvalidInputError("PCA of paired differences needs at least two pairs.")
    data = differences.double()
    centred = data - data.mean(dim=0)
    _, singular, vh = torch.linalg.svd(centred, full_matrices=False)
    if not singular[0] > 1e-9 * max(1.0, float(data.abs().max())):
        raise InvalidInputError(
            "The paired differences are all alike, so they have no principal component; "
            "use the difference of means."
        )
    component = vh[0]
    projection = float((data @ component).mean())
    if projection < 0:
        component, projection = -component, -projection
    scaled: torch.Tensor = (component * projection).float()
    return scaled
