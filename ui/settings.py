"""Form values that outlive a session: the layer, the coefficient and the
optimization settings the user last entered.

Inside text-generation-webui the store is the extension's `params` dict: the
webui fills it from the `<extension>-<key>` entries of its settings before
`ui()` runs and writes it back on "Save settings". Standalone there is no
store and the forms start from the defaults. A stored value of the wrong
kind (settings.yaml is edited by hand) is ignored with a log line: building
the tabs must never fail on it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import MutableMapping
from typing import Any

import gradio as gr

log = logging.getLogger(__name__)

# key -> (kind, default). A default of None means "derived from the model".
FIELDS: dict[str, tuple[type, Any]] = {
    "layer": (int, None),
    "coefficient": (float, 2.0),
    "optimize_task": (str, "steer_sentiment"),
    "optimize_task_folder": (str, None),  # None: the tasks folder shipped with steerswarm
    "optimize_metric": (str, "acc"),
    "optimize_limit": (int, 20),
    "optimize_batch_size": (int, 8),
    "optimize_particles": (int, 4),
    "optimize_iterations": (int, 3),
    "optimize_layer_min": (int, None),
    "optimize_layer_max": (int, None),
    "optimize_alpha_min": (float, -8.0),
    "optimize_alpha_max": (float, 8.0),
    "optimize_c1": (float, 0.5),
    "optimize_c2": (float, 0.3),
    "optimize_w": (float, 0.9),
    "optimize_seed": (int, 0),
    "optimize_heldout_task": (str, ""),  # empty: no held-out scoring
    "optimize_heldout_limit": (int, 100),
}

DEFAULTS: dict[str, Any] = {key: default for key, (_kind, default) in FIELDS.items()}


def _coerce(kind: type, value: Any) -> Any:
    """`value` as `kind`, or raise ValueError (bools are not numbers here)."""
    if isinstance(value, bool):
        raise ValueError("a true/false value")
    if kind is str:
        if not isinstance(value, str):
            raise ValueError("not text")
        return value
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError("not a finite number")
    if kind is int:
        if float(value) != int(value):
            raise ValueError("not a whole number")
        return int(value)
    return float(value)


class FormSettings:
    """Reads the stored form values and, given a store, keeps it up to date."""

    def __init__(self, store: MutableMapping[str, Any] | None = None) -> None:
        self.store = store

    def get(self, key: str, fallback: Any = None) -> Any:
        """The stored value of `key`, else its default, else `fallback`."""
        kind, default = FIELDS[key]
        value = None if self.store is None else self.store.get(key)
        if value is not None:
            try:
                return _coerce(kind, value)
            except ValueError as exc:
                log.warning("ignoring the saved %s=%r (%s)", key, value, exc)
        return fallback if default is None else default

    def remember(self, component: gr.components.Component, key: str) -> None:
        """Store the component's value under `key` whenever the user changes it."""
        if self.store is None:
            return
        store, kind = self.store, FIELDS[key][0]

        def remember_value(value: Any) -> None:
            try:
                store[key] = _coerce(kind, value)
            except ValueError:
                pass  # a half-typed number: the form itself refuses it on use

        component.change(
            remember_value, [component], None, api_name=False, show_progress="hidden", queue=False
        )
