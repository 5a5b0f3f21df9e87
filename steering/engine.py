"""The only module that talks to llm_steer.

llm_steer replaces a decoder layer's `forward` to capture or steer the hidden
state entering it. We keep its mechanism but fix three things by subclassing:
its state lives in a class attribute shared by every instance (we give each
instance its own), it only finds layers at `model.model.layers` (we hand it a
view of the layers), and it scales the added direction by the RMS of the last
position, which is padding in a right-padded batch (we add exactly coeff * V).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from types import SimpleNamespace
from typing import Any, Callable

import llm_steer
import torch

from steering.errors import IncompatibleVectorError, InvalidInputError, NoModelError
from steering.models import ModelInfo, find_decoder_layers, model_info
from steering.vector import SteeringVector, check_layer


class _LayerView:
    """Shows llm_steer the layers where it expects them (`_modules['model'].layers`)
    without adding or renaming anything in the real model, so `state_dict()`
    and `save_pretrained()` stay untouched. It holds the model itself only
    weakly (see `_model_ref`)."""

    def __init__(self, model: torch.nn.Module, layers: torch.nn.ModuleList) -> None:
        self._model_ref = _model_ref(model)
        self._modules = {"model": SimpleNamespace(layers=layers)}

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return _live(self._model_ref)(*args, **kwargs)

    def parameters(self) -> Iterator[torch.nn.Parameter]:
        return _live(self._model_ref).parameters()

    def modules(self) -> Iterator[torch.nn.Module]:
        return _live(self._model_ref).modules()


def _model_ref(model: Any) -> Callable[[], Any]:
    """A weak reference to `model`.

    Nothing here may keep a model alive: when text-generation-webui unloads
    or replaces its model it drops its reference and collects garbage to free
    the GPU memory, and a strong reference held by the steering state (or by
    the `_STEERERS` entry, whose value would then keep its own key alive)
    would keep every old model's weights in memory.
    """
    try:
        return weakref.ref(model)
    except TypeError:  # objects without weak reference support (not torch modules)
        return lambda: model


def _live(ref: Callable[[], Any]) -> Any:
    model = ref()
    if model is None:
        raise NoModelError("The model was unloaded. Load a model first.")
    return model


class _OwnSteer(llm_steer.Steer):
    """llm_steer.Steer with per-instance state and the exact rule H + coeff * V."""

    def __init__(self, view: _LayerView, tokenizer: Any) -> None:
        super().__init__(view, tokenizer)  # type: ignore[arg-type]
        self.steers = {}  # shadows the class-level dict shared by all instances

    def _steer_vector_forward(self, layer_idx: int) -> Callable[..., Any]:
        def steered_forward(*args: Any, **kwargs: Any) -> Any:
            data = self.steers[layer_idx]
            in_kwargs = "hidden_states" in kwargs
            hidden = kwargs["hidden_states"] if in_kwargs else args[0]
            delta = sum(elem.coeff * elem.tensor for elem in data.steer_vectors)
            # Out of place: the caller may still hold the unsteered tensor.
            steered = hidden + delta.to(hidden.dtype)
            if in_kwargs:
                kwargs["hidden_states"] = steered
            else:
                args = (steered, *args[1:])
            return data.orig_forward_fn(*args, **kwargs)

        return steered_forward

    def reset(self, layer_idx: int) -> None:
        super().reset(layer_idx)
        # llm_steer restores the saved bound method as an instance attribute;
        # drop it when it is just the class's own forward, so the layer is
        # exactly as it was (no attribute, no reference cycle).
        layer = self.model._modules["model"].layers[layer_idx]
        restored = vars(layer).get("forward")
        if getattr(restored, "__func__", None) is type(layer).forward:
            del layer.forward

    def capture_input(self, layer_idx: int, input_ids: torch.Tensor) -> torch.Tensor:
        """The hidden state entering `layer_idx` for `input_ids` ([1, T])."""
        try:
            return self._capture_tensor(layer_idx, input_ids)
        finally:
            self.reset(layer_idx)

    def apply(self, vectors: Sequence[SteeringVector]) -> None:
        self.reset_all()
        for vector in vectors:
            direction = vector.direction.to(self.device)
            self._add_steer_vector(
                vector.layer,
                llm_steer.SteerElement(
                    text=vector.summary(), tensor=direction, coeff=vector.coeff
                ),
            )

    def steered_layers(self) -> list[int]:
        return sorted(self.steers)


class ActiveVectors:
    """The active vectors of one Steerer, kept apart from it: holding this
    remembers a model's vectors without keeping the model alive."""

    __slots__ = ("vectors",)

    def __init__(self) -> None:
        self.vectors: tuple[SteeringVector, ...] = ()


# One Steerer per model object: two would each save the other's replaced
# forward as the "original" and restore the wrong one. Keyed weakly, and a
# Steerer holds its model only weakly, so an entry goes when its model does.
_STEERERS: weakref.WeakKeyDictionary[torch.nn.Module, Steerer] = weakref.WeakKeyDictionary()
_STEERERS_LOCK = threading.Lock()


def steerer_for(model: Any, tokenizer: Any, name: str = "model") -> Steerer:
    """The Steerer that owns `model`, created on first use."""
    with _STEERERS_LOCK:
        steerer = _STEERERS.get(model)
        if steerer is None or steerer.tokenizer is not tokenizer:
            if steerer is not None:
                steerer.reset()
            steerer = Steerer(model, tokenizer, name)
            _STEERERS[model] = steerer
        return steerer


class Steerer:
    """Owns the steering of one model: the active vectors and the hooks.

    Use `steerer_for(model, tokenizer)` rather than building one directly.
    Every change is all-or-nothing: on any error the previous set is restored.
    """

    def __init__(self, model: Any, tokenizer: Any, name: str = "model") -> None:
        self._model_ref = _model_ref(model)
        self.tokenizer = tokenizer
        self.layers = find_decoder_layers(model)
        self.info: ModelInfo = model_info(model, name)
        self._engine = _OwnSteer(_LayerView(model, self.layers), tokenizer)
        self.active = ActiveVectors()
        self._lock = threading.RLock()
        self._scoped = False

    @property
    def model(self) -> Any:
        """The steered model.

        Raises:
            NoModelError: the model was unloaded (the Steerer holds it weakly).
        """
        return _live(self._model_ref)

    @property
    def vectors(self) -> tuple[SteeringVector, ...]:
        return self.active.vectors

    @property
    def _vectors(self) -> tuple[SteeringVector, ...]:
        return self.active.vectors

    @_vectors.setter
    def _vectors(self, vectors: tuple[SteeringVector, ...]) -> None:
        self.active.vectors = vectors

    @property
    def device(self) -> torch.device:
        return self._engine.device

    def check(self, vector: SteeringVector) -> None:
        """Raise IncompatibleVectorError unless `vector` fits this model."""
        if vector.hidden_size != self.info.hidden_size:
            raise IncompatibleVectorError(
                f"The vector has hidden size {vector.hidden_size} but {self.info.name} "
                f"has {self.info.hidden_size}."
            )
        if not 0 <= vector.layer < self.info.num_layers:
            raise IncompatibleVectorError(
                f"The vector is for layer {vector.layer} but {self.info.name} has "
                f"layers 0 to {self.info.num_layers - 1}."
            )

    def set_vectors(self, vectors: Sequence[SteeringVector]) -> None:
        """Make `vectors` the active set, or change nothing if any does not fit."""
        vectors = tuple(vectors)
        for vector in vectors:
            self.check(vector)
        with self._lock:
            previous = self._vectors
            try:
                self._engine.apply(vectors)
            except BaseException:
                self._engine.apply(previous)
                raise
            self._vectors = vectors

    def add(self, vector: SteeringVector) -> None:
        self.set_vectors((*self._vectors, vector))

    def remove(self, index: int) -> SteeringVector:
        """Remove the vector at `index` (0-based) and return it."""
        with self._lock:
            if not 0 <= index < len(self._vectors):
                raise InvalidInputError(
                    f"There is no vector number {index + 1}: "
                    f"{len(self._vectors)} vector(s) are active."
                )
            removed = self._vectors[index]
            self.set_vectors(self._vectors[:index] + self._vectors[index + 1 :])
            return removed

    def reset(self) -> None:
        """Remove every vector; the model is then exactly the unsteered model."""
        self.set_vectors(())

    @contextmanager
    def applied(self, vectors: Sequence[SteeringVector]) -> Iterator[None]:
        """Steer with `vectors` inside the block; the previous set is back after it,
        whatever happens inside. Does not nest."""
        with self._lock:
            if self._scoped:
                raise RuntimeError("Steerer.applied() does not nest.")
            self._scoped = True
            try:
                with self._swapped(vectors):
                    yield
            finally:
                self._scoped = False

    def unsteered(self) -> AbstractContextManager[None]:
        """The model with no steering inside the block."""
        return self.applied(())

    @contextmanager
    def _swapped(self, vectors: Sequence[SteeringVector]) -> Iterator[None]:
        with self._lock:
            previous = self._vectors
            self.set_vectors(vectors)
            try:
                yield
            finally:
                self.set_vectors(previous)

    def steered_layers(self) -> list[int]:
        """Layers whose forward is currently replaced (for tests and checks)."""
        return self._engine.steered_layers()

    def capture_mean(self, prompts: Sequence[str], layer: int) -> torch.Tensor:
        """Mean hidden state entering `layer` over the prompts' tokens, then over prompts.

        A BOS token is put first when the tokenizer has one, and position 0 is
        left out of the mean: its activation is an outsized attention sink that
        says nothing about the prompt. Captured with no steering active.
        """
        layer = check_layer(layer, self.info.num_layers)
        token_lists = [self._tokens(prompt) for prompt in prompts]
        means = []
        with self._swapped(()), torch.no_grad():
            for tokens in token_lists:
                ids = torch.tensor([tokens], device=self.device)
                hidden = self._engine.capture_input(layer, ids)
                means.append(hidden[0, 1:].float().mean(dim=0).cpu())
        return torch.stack(means).mean(dim=0)

    def _tokens(self, prompt: str) -> list[int]:
        tokens = self.tokenizer.encode(prompt, add_special_tokens=False)
        bos = self.tokenizer.bos_token_id
        if bos is not None:
            tokens = [bos, *tokens]
        if len(tokens) < 2:
            raise InvalidInputError(
                f"The prompt {prompt!r} is too short: it needs at least two tokens."
            )
        if len(tokens) > self.info.max_context:
            raise InvalidInputError(
                f"A prompt is {len(tokens)} tokens long, longer than the model's "
                f"context of {self.info.max_context} tokens: {prompt[:60]!r}…"
            )
        return tokens
