"""The hidden state entering every decoder layer, for many prompts at once.

One right-padded batched forward per chunk of prompts records, with a forward
pre-hook on each layer, the mean over each prompt's real tokens (position 0
left out: its activation is an outsized attention sink that says nothing about
the prompt) of the state entering that layer. Right padding keeps every real
token's position and causal context unchanged, so the numbers are those of
one forward per prompt. The forward stops after the last layer's input is
recorded: the vocabulary projection of a big batch is the largest tensor of
the whole pass and is not needed.

Memory stays flat however many prompts there are: each batch is padded to a
multiple of PAD_BUCKET tokens (steering/limits.py), so a long capture makes
tensors of a few repeated sizes, which the allocator reuses. With a width
per batch, a 5,000-prompt capture made hundreds of distinct sizes and glibc's
heap fragmented (the process grew by gigabytes; see bench/capture_memory.py).
A capture reports progress after each batch and stops at a set cancel event.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch

from steering.errors import JobCancelled
from steering.limits import CAPTURE_BATCH, PAD_BUCKET

if TYPE_CHECKING:
    from steering.budget import Throughput

# Prompts per forward: enough to use a batch, few enough that memory stays flat
# (each layer's state is reduced to [B, H] at once).
CHUNK = CAPTURE_BATCH

# on_progress(prompts done, prompts in all), after each batch.
CaptureProgress = Callable[[int, int], None]

# The decoder layers, in order: a model's own ModuleList (not a typing.Sequence) or a list.
Layers = torch.nn.ModuleList | Sequence[torch.nn.Module]


class CaptureCancelled(JobCancelled):
    """A capture was cancelled; nothing was kept or changed."""


class _Done(Exception):
    """Raised by the last layer's hook to end the forward early."""


class _Stopped(Exception):
    """Raised by a layer's hook when the cancel event is set mid-forward."""


def capture_all_layers(
    model: Any,
    layers: Layers,
    token_lists: Sequence[Sequence[int]],
    device: torch.device,
    chunk: int = CHUNK,
    starts: Sequence[int] | None = None,
    norms: bool = False,
    *,
    max_width: int | None = None,
    on_progress: CaptureProgress | None = None,
    cancel: threading.Event | None = None,
    speed: Throughput | None = None,
) -> torch.Tensor:
    """[len(token_lists), len(layers), hidden] float32 on CPU: per prompt and
    layer, the mean over positions `starts[i]`.. (default 1..) of the state
    entering the layer. Every span must hold at least one position. With
    `norms`, the mean of each position's Euclidean norm instead
    ([n, len(layers), 1]: how big the states are, which sets the scale of the
    "strength" unit). Runs under no_grad.

    Batches are padded up to a multiple of PAD_BUCKET tokens, never past
    `max_width` (the model's context). `on_progress(done, total)` is called
    after each batch; a set `cancel` raises CaptureCancelled between batches
    and between the layers of a batch's forward (so a batch of long prompts
    stops within one layer's time). `speed` records the seconds per token of
    each batch (what later estimates are made from). The result is filled in
    place: no per-prompt tensors are kept.
    """
    starts = [1] * len(token_lists) if starts is None else list(starts)
    if any(not 1 <= s < len(t) for s, t in zip(starts, token_lists, strict=True)):
        raise ValueError("every span must start after position 0 and hold a token")
    order = sorted(range(len(token_lists)), key=lambda i: len(token_lists[i]))
    out: torch.Tensor | None = None
    for start in range(0, len(order), chunk):
        if cancel is not None and cancel.is_set():
            raise CaptureCancelled(
                f"The capture was cancelled after {start:,} of {len(order):,} prompts; "
                "nothing was changed."
            )
        rows = order[start : start + chunk]
        began = time.perf_counter()
        try:
            means = _chunk_means(
                model, layers, [token_lists[i] for i in rows], device, [starts[i] for i in rows],
                norms, max_width, cancel,
            )
        except _Stopped:
            raise CaptureCancelled(
                f"The capture was cancelled after {start:,} of {len(order):,} prompts; "
                "nothing was changed."
            ) from None
        if speed is not None:
            # the padded batch is what the model ran: what estimates count too
            width = padded_width(max(len(token_lists[i]) for i in rows), max_width)
            speed.record_forward(len(rows) * width, time.perf_counter() - began)
        if out is None:
            out = torch.empty((len(token_lists), *means.shape[1:]), dtype=torch.float32)
        out[torch.tensor(rows)] = means
        if on_progress is not None:
            on_progress(start + len(rows), len(order))
    if out is None:
        raise ValueError("capture_all_layers needs at least one prompt.")
    return out


def padded_tokens(
    lengths: Sequence[int], max_width: int | None = None, chunk: int = CHUNK
) -> int:
    """The tokens `capture_all_layers` runs for prompts of these lengths,
    padding included: its batches are the prompts sorted by length, `chunk`
    at a time, each padded to `padded_width` of its longest."""
    ordered = sorted(lengths)
    batches = [ordered[start : start + chunk] for start in range(0, len(ordered), chunk)]
    return sum(len(batch) * padded_width(batch[-1], max_width) for batch in batches)


def padded_width(longest: int, max_width: int | None) -> int:
    """`longest` rounded up to a multiple of PAD_BUCKET, at most `max_width`."""
    width = -(-longest // PAD_BUCKET) * PAD_BUCKET
    return max(longest, min(width, max_width)) if max_width is not None else width


def _chunk_means(
    model: Any,
    layers: Layers,
    token_lists: Sequence[Sequence[int]],
    device: torch.device,
    starts: Sequence[int],
    norms: bool,
    max_width: int | None = None,
    cancel: threading.Event | None = None,
) -> torch.Tensor:
    """[B, num_layers, hidden] (or [B, num_layers, 1] with `norms`) for one
    right-padded batch; _Stopped when `cancel` is set before a layer runs."""
    width = padded_width(max(len(tokens) for tokens in token_lists), max_width)
    ids = torch.zeros((len(token_lists), width), dtype=torch.long)
    attention = torch.zeros_like(ids)
    for row, tokens in enumerate(token_lists):
        ids[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
        attention[row, : len(tokens)] = 1
    keep = attention.bool()
    for row, start in enumerate(starts):
        keep[row, :start] = False  # position 0 (at least) is left out of the mean
    counts = keep.sum(dim=1, keepdim=True).float()
    per_layer: list[torch.Tensor | None] = [None] * len(layers)

    def record(index: int, module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if cancel is not None and cancel.is_set():
            raise _Stopped
        hidden = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
        mask = keep.to(hidden.device)[..., None]
        # where(), not a product: a padded row's state may be NaN in some
        # attention kernels, and NaN * 0 is NaN.
        values = hidden.float().norm(dim=-1, keepdim=True) if norms else hidden.float()
        total = torch.where(mask, values, 0.0).sum(dim=1)
        per_layer[index] = (total / counts.to(hidden.device)).cpu()
        if index == len(layers) - 1:
            raise _Done

    handles = [
        layer.register_forward_pre_hook(_bound(record, index), with_kwargs=True)
        for index, layer in enumerate(layers)
    ]
    try:
        with torch.no_grad():
            model(
                input_ids=ids.to(device),
                attention_mask=attention.to(device),
                use_cache=False,
            )
    except _Done:
        pass
    finally:
        for handle in handles:
            handle.remove()
    if any(mean is None for mean in per_layer):
        raise RuntimeError("The model's forward did not pass through every decoder layer.")
    return torch.stack([mean for mean in per_layer if mean is not None], dim=1)


class _bound:
    """`record` with its layer index fixed (a class, not a closure in a loop)."""

    __slots__ = ("index", "record")

    def __init__(self, record: Any, index: int) -> None:
        self.record, self.index = record, index

    def __call__(self, module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.record(self.index, module, args, kwargs)


class ActivationCache:
    """Captured activations of one model, keyed by the prompt tuple, least
    recently used dropped first. Bounded by entries and by bytes so that a
    long session with many prompt sets cannot grow without end."""

    def __init__(self, max_entries: int = 64, max_bytes: int = 256 * 2**20) -> None:
        self.max_entries, self.max_bytes = max_entries, max_bytes
        self._entries: OrderedDict[tuple[str, ...], torch.Tensor] = OrderedDict()

    def get(self, key: tuple[str, ...]) -> torch.Tensor | None:
        value = self._entries.get(key)
        if value is not None:
            self._entries.move_to_end(key)
        return value

    def __contains__(self, key: object) -> bool:
        """Whether `key` is kept (without making it the most recently used)."""
        return key in self._entries

    def put(self, key: tuple[str, ...], value: torch.Tensor) -> None:
        self._entries[key] = value
        self._entries.move_to_end(key)
        while len(self._entries) > 1 and (
            len(self._entries) > self.max_entries or self.nbytes > self.max_bytes
        ):
            self._entries.popitem(last=False)

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()
