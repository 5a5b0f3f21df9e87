"""The layer x strength map: what steering one vector does at every cell of a
grid, cheaply enough to watch it fill.

Two numbers per cell, both teacher-forced (no generation):

- **gain**: how much steering raises the mean per-token log-likelihood of the
  vector's concept prompts over its contrast prompts, minus the same
  difference unsteered (nats per token). Positive: the steered model finds
  the concept's texts likelier relative to the contrast's.
- **KL**: the guard's mean KL(unsteered || steered) of the next-token
  distributions over neutral sentences (nats per token): what it costs elsewhere.

A cell's strength s is relative to the layer (the strength unit): the added
vector alpha * V has norm s times the mean norm of the hidden states entering
that layer over the neutral set, so one row of strengths means the same push
at every layer; the raw alpha is kept with each cell. The norms are the
Steerer's one calibration (`Steerer.layer_norms`, 100 neutral sentences), the
same a vector records and the Steering tab and search bounds convert with, so
a cell applied from the map shows the strength it had on the map. The map's
own few neutral sentences are only what its KL is measured on.

Cost: one unsteered pass over the texts keeps the hidden state entering every
layer (`LayerCache`); a grid row (one layer, all its strengths) is then one
batched forward from that layer up, each strength a block of rows with its
own delta (`Steerer.applied_deltas`), so nothing below the row's layer is
run again.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from steering.capture import recapture
from steering.engine import Steerer
from steering.errors import InvalidInputError, UnsupportedModelError
from steering.kl import KlReference
from steering.layer_cache import DEFAULT_CACHE_BYTES, LayerCache, layout_unsupported
from steering.limits import MAX_MAP_PROMPTS
from steering.vector import SteeringVector

DEFAULT_ROWS = 10
# Dense below 0.3, where SmolLM2-135M's useful settings lie: its KL on neutral
# text passes the guard's budget (0.5 nats/token) at strength 0.3-0.4 at most
# layers, and the demo's best setting (layer 7, alpha 1.05) is strength 0.1
# (docs/explore.md).
DEFAULT_STRENGTHS = (0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.6, 0.8)
MAX_STRENGTH = 8.0
MAX_GRID_SIDE = 32
# Neutral sentences the map measures KL on: enough for a stable mean over a
# few hundred token positions, few enough that a 10 x 8 map stays in minutes
# on a CPU (each is run once per strength per layer).
DEFAULT_NEUTRAL = 16


def padded_texts(steerer: Steerer, texts: Sequence[str]) -> tuple[torch.Tensor, tuple[int, ...]]:
    """The texts as one right-padded batch of token ids (BOS first, cut at the
    model's context) on the model's device, and each row's length. Texts are
    scored teacher-forced from it (here, and by optimize.scoring.concept)."""
    tokenizer = steerer.tokenizer
    bos = tokenizer.bos_token_id
    rows = []
    for text in texts:
        tokens = ([bos] if bos is not None else []) + tokenizer.encode(
            text, add_special_tokens=False
        )
        if len(tokens) < 2:
            raise InvalidInputError(f"The text {text!r} is too short to score.")
        rows.append(tokens[: steerer.info.max_context])
    width = max(len(r) for r in rows)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    for r, row in enumerate(rows):
        ids[r, : len(row)] = torch.tensor(row, dtype=torch.long)
    return ids.to(steerer.device), tuple(len(r) for r in rows)


def default_layers(num_layers: int, count: int = DEFAULT_ROWS) -> tuple[int, ...]:
    """`count` layers spread evenly from the first to the last."""
    count = max(1, min(count, num_layers))
    if count == 1:
        return (num_layers // 2,)
    return tuple(sorted({round(i * (num_layers - 1) / (count - 1)) for i in range(count)}))


@dataclass(frozen=True)
class MapGrid:
    """The layers (rows) and relative strengths (columns) of a map."""

    layers: tuple[int, ...]
    strengths: tuple[float, ...] = DEFAULT_STRENGTHS

    def __post_init__(self) -> None:
        layers = tuple(self.layers)
        strengths = tuple(self.strengths)
        if not 1 <= len(layers) <= MAX_GRID_SIDE or not 1 <= len(strengths) <= MAX_GRID_SIDE:
            raise InvalidInputError(
                f"A map needs 1 to {MAX_GRID_SIDE} layers and 1 to {MAX_GRID_SIDE} strengths, "
                f"got {len(layers)} and {len(strengths)}."
            )
        for layer in layers:
            if isinstance(layer, bool) or not isinstance(layer, int) or layer < 0:
                raise InvalidInputError(f"Map layers must be whole numbers >= 0, got {layer!r}.")
        if len(set(layers)) != len(layers):
            raise InvalidInputError(f"Map layers must differ, got {list(layers)}.")
        for strength in strengths:
            if not isinstance(strength, (int, float)) or isinstance(strength, bool):
                raise InvalidInputError(f"Strengths must be numbers, got {strength!r}.")
            if not math.isfinite(strength) or abs(strength) > MAX_STRENGTH:
                raise InvalidInputError(
                    f"Strengths must be between {-MAX_STRENGTH:g} and {MAX_STRENGTH:g}, "
                    f"got {strength!r}."
                )
        object.__setattr__(self, "layers", tuple(sorted(layers)))
        object.__setattr__(self, "strengths", tuple(float(s) for s in strengths))

    @property
    def cells(self) -> int:
        return len(self.layers) * len(self.strengths)


@dataclass(frozen=True)
class MapCell:
    """One evaluated cell: `alpha` is the raw coefficient the strength gives
    at this layer for the vector's direction there."""

    layer: int
    strength: float
    alpha: float
    gain: float
    kl: float


@dataclass(frozen=True)
class MapState:
    """A map as far as it got (kept per browser session by the UI): which
    vector it is for, its grid and the cells computed so far."""

    vector_id: str
    grid: MapGrid
    cells: tuple[MapCell, ...]

    def cell(self, key: str | None) -> MapCell:
        for cell in self.cells:
            if cell_key(cell) == key:
                return cell
        raise InvalidInputError("Choose a cell of the map first.")


@dataclass(frozen=True)
class _Texts:
    ids: torch.Tensor  # [T, W] right-padded
    lengths: tuple[int, ...]
    concept: int  # rows 0..concept-1 are concept texts
    contrast: int  # the next `contrast` rows; the rest are neutral


class _MapCache(LayerCache):
    """The texts as one batch; runs from any layer with several strengths."""


class StrengthMap:
    """Scores the cells of a layer x strength grid for one vector's texts.

    Built once per map under the model lock (it runs the unsteered model over
    the texts once); `rows(...)` then yields one grid row at a time.
    """

    def __init__(
        self,
        steerer: Steerer,
        concept: Sequence[str],
        contrast: Sequence[str],
        neutral: Sequence[str],
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ) -> None:
        if not concept or not contrast:
            raise InvalidInputError(
                "The map compares concept and contrast prompts: the vector needs both."
            )
        if not neutral:
            raise InvalidInputError("The map needs at least one neutral sentence for the KL.")
        if max(len(concept), len(contrast)) > MAX_MAP_PROMPTS:
            raise InvalidInputError(
                f"The map scores at most {MAX_MAP_PROMPTS} prompts of each list (its rows are "
                f"one batch of every text at every strength); got {len(concept)} and "
                f"{len(contrast)}: pass the first {MAX_MAP_PROMPTS} (steering.budget.map_texts)."
            )
        model = steerer.model
        why = layout_unsupported(model, steerer.layers)
        if why is not None:
            raise UnsupportedModelError(f"The layer x strength map cannot run this model: {why}.")
        self.steerer = steerer
        self.num_layers = steerer.info.num_layers
        texts = [*concept, *contrast, *neutral]
        self.texts = self._plan(steerer, texts, len(concept), len(contrast))
        self._cache = _MapCache(model, [self.texts.ids], cache_bytes)
        self._head = model.get_output_embeddings()
        self._weight = self._head.weight.float()  # no copy for float32 models
        self._bias = None if self._head.bias is None else self._head.bias.float()
        # the one calibration (not the map's own neutral sentences): see the module doc
        self.layer_norms = tuple(float(n) for n in steerer.layer_norms())
        with torch.no_grad(), steerer.unsteered():
            final = self._reference_pass()
            self._ref_ll = self._text_loglik(final)
            neutral_final = final[self._neutral_positions(1)]
            self._kl_reference = KlReference.of(neutral_final, self._weight, self._bias)

    # ------------------------------------------------------------------ plan

    @staticmethod
    def _plan(steerer: Steerer, texts: Sequence[str], concept: int, contrast: int) -> _Texts:
        ids, lengths = padded_texts(steerer, texts)
        return _Texts(ids, lengths, concept, contrast)

    # --------------------------------------------------------------- passes

    def _reference_pass(self) -> torch.Tensor:
        """The unsteered final states, keeping the state entering every layer
        (as the cache allows)."""
        cache = self._cache
        hidden = cache.base.embed_tokens(self.texts.ids)
        for layer in range(self.num_layers):
            if layer and cache._storable(layer):
                cache._store[layer] = [hidden]
            hidden = cache._run_layers(hidden, layer, layer + 1)
        final: torch.Tensor = cache.base.norm(hidden)
        return final

    def _entering(self, layer: int) -> torch.Tensor:
        """The unsteered state entering `layer` for the texts."""
        cache = self._cache
        start = max((s for s in cache._store if s <= layer), default=0)
        hidden = cache._store[start][0] if start else cache.base.embed_tokens(self.texts.ids)
        return cache._run_layers(hidden, start, layer)

    def _neutral_positions(self, repeats: int) -> torch.Tensor:
        """[repeats * T, W] bool: the neutral rows' scored positions (1..len-1)."""
        t = self.texts
        mask = torch.zeros(t.ids.shape, dtype=torch.bool, device=t.ids.device)
        for r in range(t.concept + t.contrast, len(t.lengths)):
            mask[r, 1 : t.lengths[r]] = True
        return mask.repeat(repeats, 1)

    def _text_loglik(self, final: torch.Tensor) -> torch.Tensor:
        """[blocks, concept + contrast] mean per-token log-likelihood of each
        concept/contrast text, for final states of `blocks` stacked copies."""
        t = self.texts
        n = t.concept + t.contrast
        blocks = final.shape[0] // len(t.lengths)
        out = torch.empty((blocks, n), dtype=torch.float64)
        for block in range(blocks):
            for r in range(n):
                length = t.lengths[r]
                states = final[block * len(t.lengths) + r, : length - 1]
                logp = F.log_softmax(self._head(states).float(), dim=-1)
                picked = logp.gather(1, t.ids[r, 1:length, None])
                out[block, r] = float(picked.double().mean())
        return out

    def _neutral_kl(self, final: torch.Tensor, blocks: int) -> list[float]:
        """The guard's mean KL(unsteered || steered) over the neutral
        positions, per block of rows."""
        states = final[self._neutral_positions(blocks)].reshape(blocks, -1, final.shape[-1])
        return [
            float(self._kl_reference.kl(block, self._weight, self._bias).double().mean())
            for block in states
        ]

    def _gain(self, loglik: torch.Tensor) -> list[float]:
        t = self.texts

        def contrast_gap(values: torch.Tensor) -> torch.Tensor:
            return values[..., : t.concept].mean(-1) - values[..., t.concept :].mean(-1)

        base = contrast_gap(self._ref_ll[0])
        return [float(g - base) for g in contrast_gap(loglik)]

    # -------------------------------------------------------------- scoring

    def alphas(
        self, layer: int, direction: torch.Tensor, strengths: Sequence[float]
    ) -> list[float]:
        """The raw alpha of each strength at `layer` for `direction`."""
        norm = float(direction.norm())
        if norm == 0.0:
            raise InvalidInputError(f"The vector's direction at layer {layer} is zero.")
        return [s * self.layer_norms[layer] / norm for s in strengths]

    @torch.no_grad()
    def row(self, layer: int, direction: torch.Tensor, strengths: Sequence[float]) -> list[MapCell]:
        """The cells of one grid row: `direction` (the vector at `layer`) at
        every strength, all strengths in one batched forward from `layer` up."""
        if not 0 <= layer < self.num_layers:
            raise InvalidInputError(
                f"Layer {layer} is out of range: this model has layers 0 to {self.num_layers - 1}."
            )
        alphas = self.alphas(layer, direction, strengths)
        rows = len(self.texts.lengths)
        blocks = len(alphas)
        delta = torch.stack([a * direction.float() for a in alphas])  # [blocks, H]
        delta = delta.repeat_interleave(rows, dim=0)[:, None, :]
        hidden = self._entering(layer).repeat(blocks, 1, 1)
        with self.steerer.applied_deltas({layer: delta}):
            out = self._cache._run_layers(hidden, layer, self.num_layers)
        final = self._cache.base.norm(out)
        gains = self._gain(self._text_loglik(final))
        kls = self._neutral_kl(final, blocks)
        return [
            MapCell(layer, float(s), float(a), g, k)
            for s, a, g, k in zip(strengths, alphas, gains, kls, strict=True)
        ]

    def rows(
        self,
        grid: MapGrid,
        direction_at: Callable[[int], torch.Tensor],
        cancelled: Callable[[], bool] = lambda: False,
    ) -> Iterator[list[MapCell]]:
        """Every grid row in order (lowest layer first), stopping early when
        `cancelled()` turns true between rows."""
        for layer in grid.layers:
            if layer >= self.num_layers:
                raise InvalidInputError(
                    f"Layer {layer} is out of range: this model has layers 0 to "
                    f"{self.num_layers - 1}."
                )
        for layer in grid.layers:
            if cancelled():
                return
            yield self.row(layer, direction_at(layer), grid.strengths)


def cell_key(cell: MapCell) -> str:
    """The id of a cell in choices ('layer:strength'); never shown alone."""
    return f"{cell.layer}:{cell.strength:g}"


def cell_vector(steerer: Steerer, vector: SteeringVector, cell: MapCell) -> SteeringVector:
    """`vector` (same id) moved to the cell's layer with the cell's alpha."""
    return recapture(steerer, vector, cell.layer).with_alpha(cell.alpha)


def apply_cell(steerer: Steerer, vector_id: str, cell: MapCell) -> SteeringVector:
    """Replace the active vector `vector_id` by its copy at `cell`; the other
    active vectors are unchanged. Returns the new vector."""
    moved = cell_vector(steerer, steerer.find(vector_id), cell)
    steerer.set_vectors([moved if v.id == vector_id else v for v in steerer.vectors])
    return moved
