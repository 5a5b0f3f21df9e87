"""The only module that talks to llm_steer.

llm_steer replaces a decoder layer's `forward` to capture or steer the hidden
state entering it. We keep its mechanism but fix three things by subclassing:
its state lives in a class attribute shared by every instance (we give each
instance its own), it only finds layers at `model.model.layers` (we hand it a
view of the layers), and it scales the added direction by the RMS of the last
position, which is padding in a right-padded batch (we add exactly alpha * V).
A delta may also be [B, 1, H], one per row of the batch (`applied_rows`), so
several settings share one batched forward.

Capture does not go through llm_steer: `steering.activations` records every
layer's input in one batched pass with plain pre-hooks, and the Steerer keeps
the result for the session.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from types import SimpleNamespace
from typing import Any

import llm_steer
import torch

from steering.activations import ActivationCache, CaptureProgress, capture_all_layers
from steering.budget import Throughput
from steering.errors import IncompatibleVectorError, InvalidInputError, NoModelError
from steering.limits import check_prompt_count, check_prompt_tokens
from steering.models import ModelInfo, find_decoder_layers, model_info
from steering.progress import JobControl
from steering.validate import typed
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
        model: torch.nn.Module = _live(self._model_ref)
        return model.parameters()

    def modules(self) -> Iterator[torch.nn.Module]:
        model: torch.nn.Module = _live(self._model_ref)
        return model.modules()


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


class _OwnSteer(llm_steer.Steer):  # type: ignore[misc]  # llm_steer has no stubs: Steer is Any
    """llm_steer.Steer with per-instance state and the exact rule H + alpha * V."""

    def __init__(self, view: _LayerView, tokenizer: Any) -> None:
        super().__init__(view, tokenizer)
        # shadows the class-level dict shared by all instances
        self.steers: dict[int, Any] = {}

    def _steer_vector_forward(self, layer_idx: int) -> Callable[..., Any]:
        def steered_forward(*args: Any, **kwargs: Any) -> Any:
            data = self.steers[layer_idx]
            in_kwargs = "hidden_states" in kwargs
            hidden = kwargs["hidden_states"] if in_kwargs else args[0]
            delta = sum(elem.coeff * elem.tensor for elem in data.steer_vectors)
            # Out of place: the caller may still hold the unsteered tensor.
            steered = hidden + delta.to(hidden.device, hidden.dtype)
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

    def apply(self, deltas: Sequence[tuple[int, str, torch.Tensor, float]]) -> None:
        """Steer with (layer, text, tensor, alpha) elements, replacing any before;
        a tensor is [H] (every row) or [B, 1, H] (one delta per row)."""
        self.reset_all()
        for layer, text, tensor, alpha in deltas:
            self._add_steer_vector(
                layer,
                llm_steer.SteerElement(text=text, tensor=tensor.to(self.device), coeff=alpha),
            )

    def steered_layers(self) -> list[int]:
        return sorted(self.steers)


class ActiveVectors:
    """The active vectors of one Steerer, kept apart from it: holding this
    remembers a model's vectors without keeping the model alive."""

    __slots__ = ("outside", "vectors")

    def __init__(self) -> None:
        self.vectors: tuple[SteeringVector, ...] = ()
        # While a scoped trial setting is applied (an optimization scoring a
        # particle, an unsteered comparison): the set outside that scope.
        self.outside: tuple[SteeringVector, ...] | None = None


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
    """Owns the steering of one model: the active vectors, the hooks, and the
    activations captured from it this session.

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
        # Keyed by prompt tuple; lives and dies with this Steerer, hence with
        # the model object (a new model or LoRA wrapper gets a new Steerer).
        self.activations = ActivationCache()
        self._layer_norms: torch.Tensor | None = None
        self._lock = threading.RLock()
        self._scoped = False
        # How fast this model runs here: what job estimates are made from.
        self.throughput = Throughput()
        # The job using the model now (see `controlled`), or None.
        self._control: JobControl | None = None

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
    def user_vectors(self) -> tuple[SteeringVector, ...]:
        """The vectors the user made active, even while a scoped trial setting
        is applied. Safe to read from any thread without the model lock (one
        attribute read of an immutable tuple), so a page can show the real
        state while the model is busy."""
        outside = self.active.outside
        return outside if outside is not None else self.active.vectors

    @property
    def device(self) -> torch.device:
        device: torch.device = self._engine.device
        return device

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
        """Make `vectors` the active set, or change nothing if any does not fit
        or two share an id (the active set is looked up by id)."""
        vectors = tuple(vectors)
        ids = [vector.id for vector in vectors]
        if len(set(ids)) != len(ids):
            raise InvalidInputError(
                "Two active vectors cannot share an id; give the copy a new id."
            )
        self._install(vectors)

    def _install(self, vectors: tuple[SteeringVector, ...]) -> None:
        """Steer with `vectors` (a scoped setting may hold one user vector twice,
        at two layers)."""
        for vector in vectors:
            self.check(vector)
        elements = [(v.layer, v.summary(), v.direction, v.alpha) for v in vectors]
        with self._lock:
            previous = self.active.vectors
            try:
                self._engine.apply(elements)
            except BaseException:
                self._engine.apply([(v.layer, v.summary(), v.direction, v.alpha) for v in previous])
                raise
            self.active.vectors = vectors

    def add(self, vector: SteeringVector) -> None:
        self.set_vectors((*self.active.vectors, vector))

    def find(self, vector_id: str) -> SteeringVector:
        """The active vector with this id.

        Raises:
            InvalidInputError: no active vector has it.
        """
        for vector in self.active.vectors:
            if vector.id == vector_id:
                return vector
        raise InvalidInputError(
            f"There is no active vector with id {typed(vector_id)}: "
            f"{len(self.active.vectors)} vector(s) are active."
        )

    def remove(self, vector_id: str) -> SteeringVector:
        """Remove the active vector with this id and return it."""
        with self._lock:
            removed = self.find(vector_id)
            self.set_vectors(tuple(v for v in self.active.vectors if v is not removed))
            return removed

    def reset(self) -> None:
        """Remove every vector; the model is then exactly the unsteered model."""
        self.set_vectors(())

    @contextmanager
    def applied(self, vectors: Sequence[SteeringVector]) -> Iterator[None]:
        """Steer with `vectors` inside the block; the previous set is back after it,
        whatever happens inside. Does not nest."""
        with self._scope(), self._swapped(tuple(vectors)):
            yield

    @contextmanager
    def applied_rows(self, rows: Sequence[Sequence[SteeringVector]]) -> Iterator[None]:
        """Steer row i of every batch inside the block with the vectors `rows[i]`
        (a batch must then have exactly len(rows) rows). Several settings so
        share one forward; each layer gets one [B, 1, H] delta holding
        sum(alpha * V) of each row's vectors there."""
        rows = [tuple(row) for row in rows]
        if not rows:
            raise InvalidInputError("applied_rows needs at least one row.")
        for row in rows:
            for vector in row:
                self.check(vector)
        size = self.info.hidden_size
        deltas: dict[int, torch.Tensor] = {}
        for index, row in enumerate(rows):
            for vector in row:
                delta = deltas.setdefault(vector.layer, torch.zeros(len(rows), 1, size))
                delta[index, 0] += vector.alpha * vector.direction
        with self.applied_deltas(deltas):
            yield

    @contextmanager
    def applied_deltas(self, deltas: Mapping[int, torch.Tensor]) -> Iterator[None]:
        """Add `deltas[layer]` ([B, 1, H], one row per batch row, or [H]) to the
        state entering each layer inside the block, instead of the active
        vectors, which are back after it. Does not nest."""
        elements = []
        for layer, delta in sorted(deltas.items()):
            layer = check_layer(layer, self.info.num_layers)
            if not isinstance(delta, torch.Tensor) or delta.shape[-1] != self.info.hidden_size or (
                delta.dim() not in (1, 3) or (delta.dim() == 3 and delta.shape[1] != 1)
            ):
                raise InvalidInputError(
                    f"A delta for layer {layer} must be [B, 1, {self.info.hidden_size}] "
                    f"or [{self.info.hidden_size}], got {tuple(getattr(delta, 'shape', ()))}."
                )
            if not torch.isfinite(delta).all():
                raise InvalidInputError(f"The delta for layer {layer} is not finite.")
            elements.append((layer, f"row deltas at layer {layer}", delta.float(), 1.0))
        with self._scope(), self._swapped(()):
            try:
                self._engine.apply(elements)
                yield
            finally:
                self._engine.apply([])

    def unsteered(self) -> AbstractContextManager[None]:
        """The model with no steering inside the block."""
        return self.applied(())

    @contextmanager
    def _scope(self) -> Iterator[None]:
        with self._lock:
            if self._scoped:
                raise RuntimeError("Steerer.applied() does not nest.")
            self._scoped = True
            self.active.outside = self.active.vectors
            try:
                yield
            finally:
                # after the inner swap put the user's set back, so a reader
                # never sees the trial setting as the user's
                self.active.outside = None
                self._scoped = False

    @contextmanager
    def _swapped(self, vectors: tuple[SteeringVector, ...]) -> Iterator[None]:
        with self._lock:
            previous = self.active.vectors
            self._install(vectors)
            try:
                yield
            finally:
                self._install(previous)

    def steered_layers(self) -> list[int]:
        """Layers whose forward is currently replaced (for tests and checks)."""
        return self._engine.steered_layers()

    @contextmanager
    def controlled(self, control: JobControl) -> Iterator[None]:
        """Inside the block every capture pass of this Steerer (prompts,
        answers, the layer norm calibration, a direction rebuilt at another
        layer anywhere down the call stack) reports its progress to `control`
        and stops with JobCancelled once its cancel event is set. Call it
        holding the model lock; the previous control is back after it."""
        previous, self._control = self._control, control
        try:
            yield
        finally:
            self._control = previous

    def _watch(
        self, unit: str, on_progress: CaptureProgress | None, cancel: threading.Event | None
    ) -> tuple[CaptureProgress | None, threading.Event | None]:
        """The progress callback and cancel event of a capture: the ones given,
        else the running job's (`controlled`)."""
        control = self._control
        if control is None:
            return on_progress, cancel
        return on_progress or control.reporter(unit), cancel or control.cancel

    @contextmanager
    def _capturing(self) -> Iterator[None]:
        """No steering inside the block, as captures need; unlike `applied`,
        it nests in a scope (a direction rebuilt while a trial setting is
        applied) and, outside one, still shows the user's vectors to readers
        (`user_vectors`): a page loaded during a capture saw none."""
        with self._lock:
            mark = self.active.outside is None
            if mark:
                self.active.outside = self.active.vectors
            try:
                with self._swapped(()):
                    yield
            finally:
                if mark:
                    self.active.outside = None

    def has_captured(self, prompts: Sequence[str]) -> bool:
        """Whether `prompt_activations(prompts)` would run no model."""
        return tuple(prompts) in self.activations

    def has_captured_answers(self, pairs: Sequence[tuple[str, str]]) -> bool:
        """Whether `answer_activations(pairs)` would run no model."""
        return _answer_key(pairs) in self.activations

    def prompt_tokens(self, prompts: Sequence[str]) -> list[list[int]]:
        """The token ids a capture of `prompts` runs (BOS first), with the
        caps on length checked (InvalidInputError naming the prompt)."""
        check_prompt_count(len(prompts))
        return [self._tokens(prompt) for prompt in prompts]

    def answer_tokens(self, pairs: Sequence[tuple[str, str]]) -> tuple[list[list[int]], list[int]]:
        """(token ids of context + answer, where the answer starts) for each
        pair, as lm-eval splits them (the context's trailing whitespace moves
        to the answer; the answer's tokens are those past the context's)."""
        token_lists, starts = [], []
        for context, answer in pairs:
            spaces = len(context) - len(context.rstrip())
            if spaces:
                context, answer = context[:-spaces], context[-spaces:] + answer
            whole, head = self._tokens(context + answer), self._tokens(context)
            if len(whole) <= len(head):
                raise InvalidInputError(f"The answer {answer!r} has no tokens of its own.")
            token_lists.append(whole)
            starts.append(len(head))
        return token_lists, starts

    def prompt_activations(
        self, prompts: Sequence[str], on_progress: CaptureProgress | None = None,
        cancel: threading.Event | None = None,
    ) -> torch.Tensor:
        """[len(prompts), num_layers, hidden] float32 on CPU: for each prompt and
        layer, the mean over its tokens of the hidden state entering the layer.

        A BOS token is put first when the tokenizer has one, and position 0 is
        left out of the mean (see `steering.activations`). Captured with no
        steering active, every layer in one batched pass per chunk of prompts,
        and kept for the session: asking again, at any layer, costs nothing.
        `on_progress` and `cancel` default to the running job's (`controlled`).
        """
        key = tuple(prompts)
        with self._lock:
            cached = self.activations.get(key)
            if cached is not None:
                return cached
            token_lists = self.prompt_tokens(key)
            on_progress, cancel = self._watch("prompts", on_progress, cancel)
            with self._capturing():
                captured = capture_all_layers(
                    self.model, self.layers, token_lists, self.device,
                    max_width=self.info.max_context, on_progress=on_progress, cancel=cancel,
                    speed=self.throughput,
                )
            self.activations.put(key, captured)
            return captured

    def answer_activations(
        self, pairs: Sequence[tuple[str, str]], on_progress: CaptureProgress | None = None,
        cancel: threading.Event | None = None,
    ) -> torch.Tensor:
        """[len(pairs), num_layers, hidden] float32 on CPU: for each (context,
        answer) pair and layer, the mean over the answer's tokens of the state
        entering the layer, with the context before it (as lm-eval scores a
        multiple-choice answer; see `answer_tokens`). Kept for the session like
        `prompt_activations`, with progress and cancel as there: a task
        vector of many long documents is the longest capture there is."""
        key = _answer_key(pairs)
        with self._lock:
            cached = self.activations.get(key)
            if cached is not None:
                return cached
            token_lists, starts = self.answer_tokens(pairs)
            on_progress, cancel = self._watch("answers", on_progress, cancel)
            with self._capturing():
                captured = capture_all_layers(
                    self.model, self.layers, token_lists, self.device, starts=starts,
                    max_width=self.info.max_context, on_progress=on_progress, cancel=cancel,
                    speed=self.throughput,
                )
            self.activations.put(key, captured)
            return captured

    def layer_norms(self) -> torch.Tensor:
        """[num_layers] float32: the mean Euclidean norm of the hidden state
        entering each layer over the neutral text set (position 0 left out),
        unsteered. What "strength 1" means at a layer: a vector that long.
        Computed once per model."""
        from steering.neutral import CALIBRATION_SENTENCES, neutral_sentences

        with self._lock:
            if self._layer_norms is None:
                texts = neutral_sentences(count=CALIBRATION_SENTENCES)
                token_lists = [self._tokens(text) for text in texts]
                on_progress, cancel = self._watch("calibration sentences", None, None)
                with self._capturing():
                    norms = capture_all_layers(
                        self.model, self.layers, token_lists, self.device, norms=True,
                        max_width=self.info.max_context, on_progress=on_progress, cancel=cancel,
                        speed=self.throughput,
                    )
                self._layer_norms = norms[..., 0].mean(dim=0)
            return self._layer_norms

    def layer_norm(self, layer: int) -> float:
        """The mean norm at one layer (see `layer_norms`)."""
        return float(self.layer_norms()[check_layer(layer, self.info.num_layers)])

    def _tokens(self, prompt: str) -> list[int]:
        tokens: list[int] = self.tokenizer.encode(prompt, add_special_tokens=False)
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
        check_prompt_tokens(len(tokens), prompt)
        return tokens


def _answer_key(pairs: Sequence[tuple[str, str]]) -> tuple[str, ...]:
    """The activation cache's key of a list of (context, answer) pairs."""
    return ("\x00answers", *(f"{context}\x00{answer}" for context, answer in pairs))
