"""What the Explore tab computes from activations alone: the layer scan and the
vector inspector. Pure functions of tensors (no Gradio, no hooks); the model
is reached only through the all-layer capture the caller passes in.

The layer scan answers "at which layer do the vector's concept and contrast
prompts come apart along its direction?". For every layer it projects each
prompt's mean activation on the direction recaptured at that layer and takes
d' = (mean of concept projections - mean of contrast projections) / pooled std.
Layers where the two sets separate clearly are where a direction is most
likely to mean the concept (LAP, LayerNavigator); the suggested range is the
window of layers with the highest mean d'.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from steering.errors import InvalidInputError
from steering.models import find_final_norm
from steering.validate import typed

# Scan measures, by id (the UI shows `SCAN_MEASURES[id]`).
DPRIME = "dprime"
DPRIME_LOO = "dprime_loo"
SCAN_MEASURES = {
    DPRIME: "d′ on the vector's own direction",
    DPRIME_LOO: "d′ cross-validated (leave one prompt out)",
}

# The std in d' never goes below this (identical projections would divide by 0).
_MIN_STD = 1e-6


@dataclass(frozen=True)
class LayerScan:
    """Separation per layer (`scores[i]` is layer i) and the suggested range
    `low..high` (inclusive): the `width` layers with the highest mean score."""

    measure: str
    scores: tuple[float, ...]
    low: int
    high: int

    @property
    def best(self) -> int:
        """The layer with the highest score (the lowest such layer on ties)."""
        return max(range(len(self.scores)), key=lambda i: (self.scores[i], -i))


def suggested_width(num_layers: int) -> int:
    """How many layers the suggested range spans: a sixth of the model (5 of
    SmolLM2's 30), at least one. Narrow enough to save an optimizer most of
    its search, wide enough to hold the neighbours of a noisy peak."""
    return max(1, round(num_layers / 6))


def suggest_range(scores: Sequence[float], width: int) -> tuple[int, int]:
    """(low, high) of the window of `width` consecutive layers with the highest
    mean score; the lowest such window on ties."""
    if not scores:
        raise InvalidInputError("There are no layer scores to suggest a range from.")
    width = max(1, min(int(width), len(scores)))
    values = torch.tensor([float(s) for s in scores], dtype=torch.float64)
    means = values.unfold(0, width, 1).mean(dim=1)
    low = int(torch.argmax(means))  # first maximum on ties
    return low, low + width - 1


def _dprime(concept: torch.Tensor, contrast: torch.Tensor) -> float:
    pooled = ((concept.var(unbiased=True) + contrast.var(unbiased=True)) / 2).sqrt()
    return float((concept.mean() - contrast.mean()) / pooled.clamp_min(_MIN_STD))


def _unit(direction: torch.Tensor) -> torch.Tensor:
    unit: torch.Tensor = direction / direction.norm().clamp_min(1e-12)
    return unit


def _check_activations(concept: torch.Tensor, contrast: torch.Tensor) -> None:
    if concept.dim() != 3 or contrast.dim() != 3 or concept.shape[1:] != contrast.shape[1:]:
        raise InvalidInputError(
            "Concept and contrast activations must both be [prompts, layers, hidden], "
            f"got {tuple(concept.shape)} and {tuple(contrast.shape)}."
        )
    if concept.shape[0] < 2 or contrast.shape[0] < 2:
        raise InvalidInputError(
            "The layer scan needs at least two concept and two contrast prompts "
            f"(the vector has {concept.shape[0]} and {contrast.shape[0]}): the spread of "
            "each set is part of the measure."
        )


def layer_scan(
    concept: torch.Tensor,
    contrast: torch.Tensor,
    directions: torch.Tensor,
    measure: str = DPRIME,
    width: int | None = None,
) -> LayerScan:
    """Score every layer.

    Args:
        concept: [P, L, H] per-prompt mean activations of the concept prompts.
        contrast: [Q, L, H] the same for the contrast prompts.
        directions: [L, H] the vector's direction recaptured at every layer
            (used by DPRIME; DPRIME_LOO makes its own from the other prompts).
        measure: DPRIME or DPRIME_LOO.
        width: layers in the suggested range (default `suggested_width`).
    """
    if measure not in SCAN_MEASURES:
        raise InvalidInputError(
            f"Unknown scan measure {typed(measure)}; valid: {', '.join(SCAN_MEASURES)}."
        )
    concept, contrast = concept.double(), contrast.double()
    _check_activations(concept, contrast)
    layers = concept.shape[1]
    if measure == DPRIME and tuple(directions.shape) != (layers, concept.shape[2]):
        raise InvalidInputError(
            f"Directions must be [{layers}, {concept.shape[2]}], got {tuple(directions.shape)}."
        )
    scores = []
    for layer in range(layers):
        a, b = concept[:, layer], contrast[:, layer]
        if measure == DPRIME:
            unit = _unit(directions[layer].double())
            scores.append(_dprime(a @ unit, b @ unit))
        else:
            scores.append(_dprime_loo(a, b))
    low, high = suggest_range(scores, width or suggested_width(layers))
    return LayerScan(measure=measure, scores=tuple(scores), low=low, high=high)


def _dprime_loo(a: torch.Tensor, b: torch.Tensor) -> float:
    """d' with each prompt projected on the difference of means of the others,
    so no prompt helps make the direction it is measured on."""
    mean_a, mean_b = a.mean(0), b.mean(0)
    n, m = a.shape[0], b.shape[0]
    # The mean without row i: (n * mean - x_i) / (n - 1).
    without_a = (n * mean_a - a) / (n - 1)
    without_b = (m * mean_b - b) / (m - 1)
    proj_a = ((without_a - mean_b) * a).sum(-1) / (without_a - mean_b).norm(dim=-1).clamp_min(1e-12)
    proj_b = ((mean_a - without_b) * b).sum(-1) / (mean_a - without_b).norm(dim=-1).clamp_min(1e-12)
    return _dprime(proj_a, proj_b)


# ---------------------------------------------------------------- inspector


def direction_norms(directions: torch.Tensor) -> tuple[float, ...]:
    """The norm of the direction recaptured at each layer ([L, H] -> L floats)."""
    return tuple(float(n) for n in directions.double().norm(dim=-1))


def cosine_matrix(directions: Sequence[torch.Tensor]) -> list[list[float]]:
    """Pairwise cosine similarity of the directions (1 on the diagonal; 0 for a
    zero direction)."""
    if not directions:
        return []
    stacked = torch.stack([d.double() for d in directions])
    unit = stacked / stacked.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    matrix = unit @ unit.T
    for i in range(len(directions)):
        matrix[i, i] = 1.0 if float(stacked[i].norm()) > 0 else 0.0
    return [[float(x) for x in row] for row in matrix]


@dataclass(frozen=True)
class LensToken:
    """One vocabulary entry and the logit the direction gives it."""

    token_id: int
    text: str
    logit: float


@dataclass(frozen=True)
class LogitLens:
    """The tokens a direction promotes (highest logits first) and suppresses
    (lowest first) when read out through the model's final norm and unembedding."""

    promoted: tuple[LensToken, ...]
    suppressed: tuple[LensToken, ...]


def lens_logits(
    final_norm: Any, unembedding: torch.nn.Module, direction: torch.Tensor
) -> torch.Tensor:
    """[vocab] logits of `direction` read as if it were the last hidden state:
    the final norm, then the output layer (logit lens)."""
    param = next(unembedding.parameters())
    hidden = direction.to(param.device, param.dtype)[None, None]
    with torch.no_grad():
        if final_norm is not None:
            hidden = final_norm(hidden)
        logits: torch.Tensor = unembedding(hidden)[0, 0].float().cpu()
        return logits


def logit_lens(
    final_norm: Any,
    unembedding: torch.nn.Module,
    tokenizer: Any,
    direction: torch.Tensor,
    k: int = 10,
) -> LogitLens:
    """The `k` tokens the direction promotes most and the `k` it suppresses most."""
    if not 1 <= int(k) <= 100:
        raise InvalidInputError(f"The number of tokens must be between 1 and 100, got {k!r}.")
    logits = lens_logits(final_norm, unembedding, direction)
    top = torch.topk(logits, int(k))
    bottom = torch.topk(-logits, int(k))

    def tokens(ids: torch.Tensor) -> tuple[LensToken, ...]:
        return tuple(
            LensToken(int(i), tokenizer.decode([int(i)]), float(logits[int(i)])) for i in ids
        )

    return LogitLens(promoted=tokens(top.indices), suppressed=tokens(bottom.indices))


def final_norm_and_head(model: Any) -> tuple[Any, torch.nn.Module]:
    """The final norm (None when the model has none at a known place) and the
    output layer, for the logit lens."""
    head = model.get_output_embeddings()
    if head is None:
        raise InvalidInputError("The model has no output layer to read a direction through.")
    return find_final_norm(model), head



# ------------------------------------------------------- through a Steerer


def all_directions(steerer: Any, vector: Any) -> torch.Tensor:
    """[L, H] the vector's own extraction method run at every layer, from the
    activations the Steerer keeps (one capture pass for the whole model)."""
    return torch.stack(
        [vector.source.direction(steerer, layer) for layer in range(steerer.info.num_layers)]
    )


def scan_vector(steerer: Any, vector: Any, measure: str = DPRIME) -> LayerScan:
    """The layer scan of `vector`'s concept and contrast prompts."""
    if not vector.contrast_prompts:
        raise InvalidInputError(
            "The layer scan compares concept and contrast prompts, and this vector has no "
            "contrast prompts. Make one with contrast prompts in the Steering tab."
        )
    concept = steerer.prompt_activations(vector.prompts)
    contrast = steerer.prompt_activations(vector.contrast_prompts)
    return layer_scan(concept, contrast, all_directions(steerer, vector), measure)


@dataclass(frozen=True)
class Inspection:
    """What the inspector shows for one vector: its direction's norm at every
    layer, the cosine matrix of the active vectors (in their order), and the
    logit lens of the vector as it is applied."""

    norms: tuple[float, ...]
    cosines: list[list[float]]
    lens: LogitLens


def inspect_vector(steerer: Any, vector: Any, k: int = 10) -> Inspection:
    norm, head = final_norm_and_head(steerer.model)
    return Inspection(
        norms=direction_norms(all_directions(steerer, vector)),
        cosines=cosine_matrix([v.direction for v in steerer.vectors]),
        lens=logit_lens(norm, head, steerer.tokenizer, vector.direction, k),
    )


def compare_completions(
    steerer: Any,
    settings: Sequence[Sequence[Any]],
    prompt: str,
    generation: Any,
    cancelled: Any = lambda: False,
    cancel: threading.Event | None = None,
) -> Any:
    """Greedy (or sampled, per `generation`) replies to `prompt`, one per
    setting (each a sequence of vectors; () is the unsteered model), written
    one after the other. Yields the list of replies so far as each grows; stops
    between settings when `cancelled()` turns true, and within a reply at the
    next token once `cancel` is set. The active vectors are back after each
    setting."""
    from steering.generate import stream_reply

    messages = [{"role": "user", "content": prompt}]
    replies = [""] * len(settings)
    for index, vectors in enumerate(settings):
        if cancelled() or (cancel is not None and cancel.is_set()):
            return
        with steerer.applied(tuple(vectors)):
            for text in stream_reply(
                steerer.model, steerer.tokenizer, messages, generation, cancel
            ):
                replies[index] = text
                yield list(replies)
