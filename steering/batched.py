"""Several steering settings in one batched pass: per-row deltas.

A search iteration proposes several settings. Scoring them one after another
runs the same inputs through the same unsteered layers again and again, in
batches too small to keep a GPU (or even two CPU cores) busy.
`PrefixScorer.score_many` instead repeats each batch once per setting, each
block of rows carrying its own setting's deltas (the Steerer's per-row
`[B, 1, H]` deltas), and runs the layers below the lowest steered layer once.

This module holds what that needs around a scorer: a setting's deltas per
layer, the shared climb through a `steering.layer_cache.LayerCache`, and the
memory a pass may take (from free memory: torch's CUDA figures on a GPU,
psutil's available memory on the CPU).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

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


def checked_deltas(
    steerer: Any, settings: Sequence[Sequence[SteeringVector]]
) -> list[dict[int, torch.Tensor]]:
    """`setting_deltas` of each setting, once every vector is checked against
    the steerer's model (IncompatibleVectorError before anything runs)."""
    for vectors in settings:
        for vector in vectors:
            steerer.check(vector)
    return [setting_deltas(vectors) for vectors in settings]


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
    """`cache.run` (a `steering.layer_cache.LayerCache`) for several settings in
    shared passes, calling `finish(setting j, batch index, last hidden state
    of its rows)`.

    `deltas[j]` maps each layer setting j steers to the [H] delta it adds
    there. Per batch, the settings are taken in order of their lowest
    steered layer. One unsteered state climbs the layers once (from the
    nearest stored layer), and each setting joins the shared pass at its own
    lowest layer with a copy of it: setting rows are blocks of R rows, each
    block carrying its own setting's deltas through `steerer.applied_deltas`
    (nothing else steers inside it; a setting that does not steer a layer
    adds zeros there, which is exactly nothing). So no setting runs a layer
    it would not run alone, and the layers below each setting's steering run
    once per input, whatever the number of settings. At most
    `max_rows(batch ids)` rows share a pass: fewer settings at a time, down
    to one (sequential) when memory is short."""
    size = cache.num_layers
    lows = [min(d) if d else size for d in deltas]
    order = sorted(range(len(deltas)), key=lambda j: (lows[j], j))
    start, first_low = cache._start(lows[order[0]] if order else None)
    new: dict[int, list[torch.Tensor]] = {}
    for index, ids in enumerate(cache._batch_ids):
        rows = int(ids.shape[0])
        group = max(1, min(len(deltas), max_rows(ids) // rows))
        with steerer.applied_deltas({}):  # the unsteered climb
            base = cache._prefix(index, start, first_low, new)
        base_layer = first_low
        for at in range(0, len(order), group):
            members = order[at : at + group]
            hidden: torch.Tensor | None = None
            layer = lows[members[0]]
            joined: list[int] = []
            for j in members:
                if lows[j] > base_layer:
                    keep: dict[int, torch.Tensor] = {}
                    with steerer.applied_deltas({}):
                        base = cache._run_layers(base, base_layer, lows[j], keep)
                    for kept, state in keep.items():
                        new.setdefault(kept, []).append(state)
                    base_layer = lows[j]
                if hidden is not None and lows[j] > layer:
                    hidden = _climb(cache, steerer, hidden, [deltas[k] for k in joined], rows,
                                    layer, lows[j])
                layer = lows[j]
                hidden = base if hidden is None else torch.cat([hidden, base])
                joined.append(j)
            assert hidden is not None
            hidden = _climb(cache, steerer, hidden, [deltas[k] for k in joined], rows, layer, size)
            for block, j in enumerate(joined):
                finish(j, index, hidden[block * rows : (block + 1) * rows])
    cache._store.update(new)  # only whole layers: every batch got through


def _climb(
    cache: Any,
    steerer: Any,
    hidden: torch.Tensor,
    deltas: Sequence[Mapping[int, torch.Tensor]],
    rows: int,
    start: int,
    stop: int,
) -> torch.Tensor:
    """Layers start..stop-1 on blocks of `rows` rows, block j steered by deltas[j]."""
    with steerer.applied_deltas(row_blocks(deltas, rows, cache.config.hidden_size)):
        out: torch.Tensor = cache._run_layers(hidden, start, stop)
        return out

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
