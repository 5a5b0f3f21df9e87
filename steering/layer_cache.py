"""Running fixed batches of token ids through a decoder with the layers
below the lowest steered layer run once.

Steering adds to the hidden state entering its layer, so for a given input
everything below the lowest steered layer is the same for every setting.
`LayerCache` keeps the hidden states entering layers (every layer, or every
k-th, within a memory budget) and starts a later pass from the nearest kept
layer at or below its steering. What is scored from the last hidden state is
the subclass's business: lm-eval's answers (optimize/scoring/prefix.py), the
KL to the unsteered model (optimize/guard/kl.py), the Explore map
(steering/explore_map.py).

The layer loop is written for the Llama, Mistral and Qwen2/3 layout
(`model.model.{embed_tokens, rotary_emb, layers, norm}`, `model.lm_head`);
`layout_unsupported` says why another model cannot use it.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

# Model types whose base model runs exactly: embed -> rotary + causal mask ->
# layers -> norm, and whose causal LM applies only lm_head after that.
SUPPORTED_MODEL_TYPES = frozenset({"llama", "mistral", "qwen2", "qwen3"})

# The store of hidden states keeps at most this many bytes (1 GiB).
DEFAULT_CACHE_BYTES = 1 << 30


def layout_unsupported(model: Any, layers: torch.nn.ModuleList) -> str | None:
    """Why the layer loop cannot run this model, or None when it can."""
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    if model_type not in SUPPORTED_MODEL_TYPES:
        return f"model type {model_type!r} is not one of {sorted(SUPPORTED_MODEL_TYPES)}"
    base = getattr(model, "model", None)
    parts = ("embed_tokens", "rotary_emb", "norm", "layers")
    if base is None or any(getattr(base, p, None) is None for p in parts):
        return "the model does not have the model.{embed_tokens, rotary_emb, norm, layers} layout"
    if base.layers is not layers:
        return "the steered layers are not model.model.layers"
    if getattr(model, "lm_head", None) is None:
        return "the model has no lm_head"
    return None


def _mask(maker: Any, config: Any, hidden: torch.Tensor, positions: torch.Tensor) -> Any:
    old = "cache_position" in inspect.signature(maker).parameters  # 4.5x, the webui's
    rest = (positions[0], None) if old else (None,)
    return maker(config, hidden, None, *rest, position_ids=positions)


class LayerCache:
    """Runs fixed right-padded batches of token ids through a decoder with the
    layers below the lowest steered layer run once: the hidden states entering
    layers are kept (every layer, or every k-th, up to `cache_bytes`) and a
    later pass starts from the nearest kept layer at or below its steering.

    Subclasses plan the batches and say what to do with each batch's last
    hidden state (`run`). The model must pass `layout_unsupported`.
    """

    def __init__(
        self, model: Any, batch_ids: Sequence[torch.Tensor], cache_bytes: int
    ) -> None:
        self.model = model
        self.base = model.model
        self.layers = self.base.layers
        self.num_layers = len(self.layers)
        self.config = self.base.config
        self.device = self.base.embed_tokens.weight.device
        self.cache_bytes = max(0, int(cache_bytes))
        self._batch_ids = [ids.to(self.device) for ids in batch_ids]
        self.rows = sum(int(ids.shape[0]) for ids in self._batch_ids)
        # layer -> hidden states entering it, one tensor per batch
        self._store: dict[int, list[torch.Tensor]] = {}
        self._bytes_per_layer = sum(int(ids.numel()) for ids in batch_ids) * self._hidden_bytes()
        self._storable_layers = self._choose_storable()
        self.layer_runs = 0  # decoder layers run, summed over batches

    def _hidden_bytes(self) -> int:
        dtype = self.base.embed_tokens.weight.dtype
        return int(self.config.hidden_size) * torch.empty((), dtype=dtype).element_size()

    # ---------------------------------------------------------------- layers

    def _mask_kinds(self) -> list[str]:
        """The attention mask each layer gets, as each model's own forward picks it."""
        model_type = self.config.model_type
        if model_type in ("qwen2", "qwen3"):
            return list(self.config.layer_types)
        if model_type == "mistral" and self.config.sliding_window is not None:
            return ["sliding_attention"] * self.num_layers
        return ["full_attention"] * self.num_layers

    def _run_layers(
        self,
        hidden: torch.Tensor,
        start: int,
        stop: int,
        keep: dict[int, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Layers start..stop-1 on `hidden` (the state entering layer `start`),
        as the base model's forward runs them for input ids with no padding
        mask. With `keep`, the states entering the storable layers in
        start+1..stop are put in it."""
        if start >= stop:
            return hidden
        from transformers.masking_utils import (
            create_causal_mask,
            create_sliding_window_causal_mask,
        )

        positions = torch.arange(hidden.shape[1], device=hidden.device).unsqueeze(0)
        kinds = self._mask_kinds()
        makers = {
            "full_attention": create_causal_mask,
            "sliding_attention": create_sliding_window_causal_mask,
        }
        masks = {
            kind: _mask(makers[kind], self.config, hidden, positions)
            for kind in set(kinds[start:stop])
        }
        rotary = self.base.rotary_emb(hidden, position_ids=positions)
        for index in range(start, stop):
            hidden = self.layers[index](
                hidden,
                attention_mask=masks[kinds[index]],
                position_ids=positions,
                position_embeddings=rotary,
            )
            self.layer_runs += 1
            if keep is not None and self._storable(index + 1):
                keep[index + 1] = hidden
        return hidden

    def _storable(self, layer: int) -> bool:
        return layer in self._storable_layers and layer not in self._store

    def _choose_storable(self) -> frozenset[int]:
        """Every layer if all fit in `cache_bytes`, else every k-th, evenly."""
        if self._bytes_per_layer <= 0 or self._bytes_per_layer > self.cache_bytes:
            return frozenset()
        fit = self.cache_bytes // self._bytes_per_layer
        stride = max(1, math.ceil(self.num_layers / fit))
        return frozenset(range(stride, self.num_layers + 1, stride))

    @property
    def stored_layers(self) -> list[int]:
        """Layers whose entering hidden states are stored."""
        return sorted(self._store)

    @property
    def stored_bytes(self) -> int:
        return len(self._store) * self._bytes_per_layer

    # ------------------------------------------------------------------ run

    def _start(self, lowest_steered: int | None) -> tuple[int, int]:
        """(nearest stored layer at or below the steering, the steering's layer)."""
        layer = self.num_layers if lowest_steered is None else int(lowest_steered)
        if not 0 <= layer <= self.num_layers:
            raise ValueError(f"layer {layer} is outside 0..{self.num_layers}")
        return max((s for s in self._store if s <= layer), default=0), layer

    def _prefix(
        self, index: int, start: int, layer: int, new: dict[int, list[torch.Tensor]]
    ) -> torch.Tensor:
        """The state entering `layer` for batch `index`, from the store at
        `start` (or the embeddings). Below `layer` nothing is steered: the
        states entering layers up to `layer` are the unsteered ones, fit to
        keep for any setting, so the storable ones go into `new`."""
        ids = self._batch_ids[index]
        hidden = self._store[start][index] if start else self.base.embed_tokens(ids)
        keep: dict[int, torch.Tensor] = {}
        hidden = self._run_layers(hidden, start, layer, keep)
        for kept, state in keep.items():
            new.setdefault(kept, []).append(state)
        return hidden

    @torch.no_grad()
    def run(
        self, lowest_steered: int | None, finish: Callable[[int, torch.Tensor], None]
    ) -> None:
        """Every batch through the model as it is now (steered at
        `lowest_steered` and above, or not at all when None), calling
        `finish(batch index, hidden state leaving the last layer)` per batch."""
        start, layer = self._start(lowest_steered)
        new: dict[int, list[torch.Tensor]] = {}
        for index in range(len(self._batch_ids)):
            hidden = self._prefix(index, start, layer, new)
            finish(index, self._run_layers(hidden, layer, self.num_layers))
        self._store.update(new)  # only whole layers: every batch got through
