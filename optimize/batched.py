"""One batched pass per swarm iteration: the pieces outside the scorer.

A search iteration proposes several settings. Scoring them one after another
runs the same inputs through the same unsteered layers again and again, in
batches too small to keep a GPU (or even two CPU cores) busy.
`PrefixScorer.score_many` instead repeats each batch once per setting, each
block of rows carrying its own setting's deltas (the Steerer's per-row
`[B, 1, H]` deltas), and runs the layers below the lowest steered layer once.

This module holds what that needs around the scorer: a setting's deltas per
layer, the memory a pass may take (from free memory: torch's CUDA figures on
a GPU, psutil's available memory on the CPU), and the evaluator the search
loop calls once per iteration.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch

from optimize.metrics import Metrics
from steering.vector import SteeringVector

# A pass may take this share of the memory free when the iteration starts:
# the rest is left to the model's own temporaries, the allocator and others.
MEMORY_SHARE = 0.25


def setting_deltas(vectors: Sequence[SteeringVector]) -> dict[int, torch.Tensor]:
    """{layer: sum of alpha * direction of `vectors` at that layer}, float32 on
    the CPU: what steering with exactly `vectors` adds to the state entering
    each layer."""
    deltas: dict[int, torch.Tensor] = {}
    for vector in vectors:
        term = vector.alpha * vector.direction.float()
        deltas[vector.layer] = deltas[vector.layer] + term if vector.layer in deltas else term
    return deltas


def row_blocks(
    deltas: Sequence[Mapping[int, torch.Tensor]], rows: int, hidden_size: int
) -> dict[int, torch.Tensor]:
    """{layer: [len(deltas) * rows, 1, H]}: block j of `rows` rows holds
    deltas[j][layer], or zeros where setting j does not steer that layer (a
    zero delta adds exactly nothing)."""
    blocks = {}
    for layer in sorted({layer for d in deltas for layer in d}):
        stacked = torch.zeros(len(deltas), hidden_size)
        for j, d in enumerate(deltas):
            if layer in d:
                stacked[j] = d[layer]
        blocks[layer] = stacked.repeat_interleave(rows, dim=0).unsqueeze(1)
    return blocks


@torch.no_grad()
def run_many(
    cache: Any,
    steerer: Any,
    deltas: Sequence[Mapping[int, torch.Tensor]],
    max_rows: Callable[[torch.Tensor], int],
    finish: Callable[[int, int, torch.Tensor], None],
) -> None:
    """`cache.run` (an `optimize.prefix.LayerCache`) for several settings in
    shared passes, calling `finish(setting j, batch index, last hidden state
    of its rows)`.

    `deltas[j]` maps each layer setting j steers to the [H] delta it adds
    there. Per batch, the layers below the lowest steered layer of all
    settings run once; that state is repeated once per setting (setting j
    owns rows j*R..(j+1)*R-1 of R rows) and the layers above run with each
    block of rows carrying its own setting's deltas through
    `steerer.applied_deltas` (nothing else steers inside it). At most
    `max_rows(batch ids)` rows share a pass: fewer settings per pass, down
    to one (sequential) when memory is short."""
    start, layer = cache._start(min((k for d in deltas for k in d), default=None))
    new: dict[int, list[torch.Tensor]] = {}
    for index, ids in enumerate(cache._batch_ids):
        rows = int(ids.shape[0])
        group = max(1, min(len(deltas), max_rows(ids) // rows))
        prefix: torch.Tensor | None = None
        for first in range(0, len(deltas), group):
            chunk = deltas[first : first + group]
            with steerer.applied_deltas(row_blocks(chunk, rows, cache.config.hidden_size)):
                if prefix is None:
                    prefix = cache._prefix(index, start, layer, new)
                hidden = prefix.repeat(len(chunk), 1, 1)
                hidden = cache._run_layers(hidden, layer, cache.num_layers)
            for j in range(len(chunk)):
                finish(first + j, index, hidden[j * rows : (j + 1) * rows])
    cache._store.update(new)  # only whole layers: every batch got through


def free_memory_bytes(device: torch.device) -> int:
    """Memory free for activations on `device` now."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    import psutil  # accelerate (hence lm-eval) depends on it

    return int(psutil.virtual_memory().available)


def bytes_per_row(config: Any, width: int, element_bytes: int) -> int:
    """A generous estimate of the memory one row `width` tokens wide needs
    while a decoder layer runs on it: the residual stream and its copies,
    the MLP's intermediate activations and the attention weights."""
    hidden = int(config.hidden_size)
    intermediate = int(getattr(config, "intermediate_size", None) or 4 * hidden)
    heads = int(getattr(config, "num_attention_heads", None) or 1)
    return width * (12 * hidden + 3 * intermediate + 2 * heads * width) * element_bytes


def row_limit(scorer: Any, budget_bytes: int | None = None) -> Callable[[torch.Tensor], int]:
    """How many rows of a batch (its ids) one pass of `scorer` may hold: `budget_bytes`
    (default: MEMORY_SHARE of the memory free now) over the estimate per row.
    Fewer than a batch's rows times the settings means fewer settings per
    pass, down to one: sequential evaluation."""
    if budget_bytes is None:
        budget_bytes = int(free_memory_bytes(scorer.device) * MEMORY_SHARE)
    element = torch.empty((), dtype=scorer.base.embed_tokens.weight.dtype).element_size()

    def limit(ids: torch.Tensor) -> int:
        per_row = bytes_per_row(scorer.config, int(ids.shape[1]), element)
        return max(1, budget_bytes // max(1, per_row))

    return limit


def batched_evaluator(
    metrics_many: Callable[[Sequence[Sequence[SteeringVector]]], Sequence[Metrics]],
    place: Callable[[Any], Sequence[SteeringVector]],
) -> Callable[[Sequence[Any]], Iterator[Metrics]]:
    """The search loop's batch hook for a fitness that scores many settings
    at once: the vectors of every setting of an iteration (`place(setting)`)
    go to `metrics_many` together. Lazy: nothing is scored until the loop
    asks for the first result, so a cancel before the iteration's first
    evaluation scores nothing."""

    def evaluate(settings: Sequence[Any]) -> Iterator[Metrics]:
        if settings:
            yield from metrics_many([place(setting) for setting in settings])

    return evaluate
