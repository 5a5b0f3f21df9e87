"""The model the tools act on, its Steerer, and the lock for all model use.

Standalone, the model never changes. Inside text-generation-webui the user may
load another model, unload it or apply a LoRA at any time, so every action
asks the session for the current model first; the session then notices the
change and carries over only the vectors that still fit.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from steering.engine import Steerer, steerer_for
from steering.errors import IncompatibleVectorError, NoModelError
from steering.models import LoadedModel


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
    ) -> None:
        self._source = source
        self.lock = lock if lock is not None else threading.Lock()
        self._last: Steerer | None = None
        self._resolve_lock = threading.Lock()

    def current(self) -> Current:
        """The current model and Steerer.

        Raises:
            NoModelError: no model is loaded.
            UnsupportedModelError: the model cannot be steered.
        """
        with self._resolve_lock:
            loaded = self._source()
            if loaded is None or loaded.model is None:
                self._last = None
                raise NoModelError("No model is loaded. Load a model first.")
            steerer = steerer_for(loaded.model, loaded.tokenizer, loaded.name)
            notice = ""
            previous = self._last
            if previous is not None and previous is not steerer:
                notice = self._carry_over(previous, steerer)
            self._last = steerer
            return Current(loaded=loaded, steerer=steerer, notice=notice)

    @staticmethod
    def _carry_over(previous: Steerer, steerer: Steerer) -> str:
        """Move the old model's vectors onto the new one where they fit."""
        kept, dropped = [], []
        for vector in previous.vectors:
            try:
                steerer.check(vector)
                kept.append(vector)
            except IncompatibleVectorError:
                dropped.append(vector)
        previous.reset()  # the old model may live on elsewhere; leave it clean
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
