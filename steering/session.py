"""The model the tools act on, its Steerer, and the lock for all model use.

Standalone, the model never changes. Inside text-generation-webui the user may
load another model, unload it or apply a LoRA at any time, so every action
asks the session for the current model first; the session then notices the
change and carries over only the vectors that still fit.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from steering.engine import ActiveVectors, Steerer, steerer_for
from steering.errors import IncompatibleVectorError, NoModelError, SteerSwarmError
from steering.models import LoadedModel
from steering.persist import DataFolder
from steering.vector import SteeringVector


@dataclass(frozen=True)
class Current:
    """The model in use now, with its Steerer; `notice` tells of a model change."""

    loaded: LoadedModel
    steerer: Steerer
    notice: str = ""


class ModelSession:
    """Resolves the current model and guards it with one lock.

    `source` returns the model in use now (or None when none is loaded);
    `lock` is held around every use of the model (the webui passes its
    generation lock, so our work and its chat never run at once).
    """

    def __init__(
        self,
        source: Callable[[], LoadedModel | None],
        lock: AbstractContextManager[Any] | None = None,
        data: DataFolder | None = None,
    ) -> None:
        """`data`: the folder the session is kept in (restored on the first
        model, written by `keep`); None keeps nothing."""
        self._source = source
        self.data = data
        self._restored = data is None
        self.lock = lock if lock is not None else threading.Lock()
        # The Steerer of the last model, held weakly: between two actions the
        # session must not keep a model the webui unloaded alive (its memory
        # would never be freed). Its vectors are remembered apart from it.
        self._last: weakref.ref[Steerer] | None = None
        self._last_active: ActiveVectors | None = None
        # Vectors of a model that was unloaded, offered to the next model.
        self._orphans: tuple[SteeringVector, ...] = ()
        self._resolve_lock = threading.Lock()
        # What the last model change did (the notice of that change), shown
        # beside the model until the next change.
        self.last_change = ""

    def current(self) -> Current:
        """The current model and Steerer.

        Raises:
            NoModelError: no model is loaded.
            UnsupportedModelError: the model cannot be steered.
        """
        with self._resolve_lock:
            loaded = self._source()
            if loaded is None or loaded.model is None:
                self._forget_model()
                raise NoModelError("No model is loaded. Load a model first.")
            steerer = steerer_for(loaded.model, loaded.tokenizer, loaded.name)
            notice = ""
            last = self._last() if self._last is not None else None
            if steerer is not last:
                changed = self._last is not None or bool(self._orphans)
                self._forget_model()
                if changed:
                    notice = self.last_change = self._carry_over(self._orphans, steerer)
                elif not self._restored and self.data is not None:
                    self._restored = True
                    notice = self.last_change = self.data.restore(steerer)
                self._orphans = ()
            self._last = weakref.ref(steerer)
            self._last_active = steerer.active
            return Current(loaded=loaded, steerer=steerer, notice=notice)

    def glance(self) -> Steerer | None:
        """The Steerer of the model last used, without asking the source or
        taking any lock (None before the first use, or once that model is
        gone). For showing the state while the model is busy; its
        `user_vectors` are what the user made active."""
        last = self._last
        return last() if last is not None else None

    def keep(self, steerer: Steerer) -> str:
        """Write the active vectors to the data folder after a change; "" or
        a one-line warning when that failed (nothing in memory is lost)."""
        return "" if self.data is None else self.data.keep(steerer)

    def still_current(self, steerer: Steerer) -> bool:
        """Whether `steerer`'s model is still the model in use (asks the source
        only; changes nothing). Long runs check it between steps, so they stop
        instead of going on with a model that was unloaded or replaced."""
        try:
            loaded = self._source()
            return (
                loaded is not None
                and loaded.model is steerer.model
                and loaded.tokenizer is steerer.tokenizer
            )
        except SteerSwarmError:
            return False

    def _forget_model(self) -> None:
        """Keep the old model's vectors as data and leave that model unsteered
        if it still lives elsewhere; hold no reference to it."""
        if self._last is not None and self._last_active is not None:
            self._orphans = self._last_active.vectors
            old = self._last()
            if old is not None:
                old.reset()
        self._last = None
        self._last_active = None

    @staticmethod
    def _carry_over(vectors: tuple[SteeringVector, ...], steerer: Steerer) -> str:
        """Put the vectors that fit onto the new model's Steerer."""
        kept, dropped = [], []
        for vector in vectors:
            try:
                steerer.check(vector)
                kept.append(vector)
            except IncompatibleVectorError:
                dropped.append(vector)
        steerer.set_vectors(kept)
        notice = f"The model changed to {steerer.info.name}."
        if kept:
            notice += f" Kept {len(kept)} vector(s) that fit it."
        if dropped:
            notice += (
                f" Dropped {len(dropped)} vector(s) made for a model of another "
                "size: " + "; ".join(v.summary(30) for v in dropped) + "."
            )
        return notice
