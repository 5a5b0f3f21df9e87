"""Form values that outlive a session: the layer, the alpha and the
optimization settings the user last entered.

Inside text-generation-webui the store is the extension's `params` dict: the
webui fills it from the `<extension>-<key>` entries of its settings before
`ui()` runs and writes it back on "Save settings". Standalone there is no
store and the forms start from the defaults. A stored value of the wrong
kind (settings.yaml is edited by hand) is ignored with a log line: building
the tabs must never fail on it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any

from optimize.config.table import FORM, fields as run_fields

if TYPE_CHECKING:
    import gradio as gr

log = logging.getLogger(__name__)

# saved key -> (kind, default). A default of None means "derived" (from the
# model, or as the setting's help says). The Steering tab's two values, then
# the Optimize form's settings from the run settings table.
FIELDS: dict[str, tuple[type, Any]] = {
    "layer": (int, None),
    "alpha": (float, 1.0),  # SmolLM2 greedy chat loops at 2 (seen in the real webui)
    **{f.saved_key: (f.kind, f.form_start) for f in run_fields(FORM)},
}

# Saved keys renamed since: old key -> new key. The old key is still read (the
# webui only fills `params` keys it is given, so these are offered too) when
# the new one was never saved.
RENAMED: dict[str, str] = {"coefficient": "alpha"}

DEFAULTS: dict[str, Any] = {key: default for key, (_kind, default) in FIELDS.items()}


def _coerce(kind: type, value: Any) -> Any:
    """`value` as `kind`, or raise ValueError (bools are not numbers here)."""
    from steering import validate
    from steering.errors import InvalidInputError

    if kind is str:
        if not isinstance(value, str):
            raise ValueError("not text")
        return value
    check = validate.whole if kind is int else validate.number
    try:
        return check("the value", value)
    except InvalidInputError as exc:
        raise ValueError(str(exc)) from None


class FormSettings:
    """Reads the stored form values and, given a store, keeps it up to date."""

    def __init__(self, store: MutableMapping[str, Any] | None = None) -> None:
        self.store = store

    def get(self, key: str, fallback: Any = None) -> Any:
        """The stored value of `key`, else its default, else `fallback`."""
        kind, default = FIELDS[key]
        value = None
        if self.store is not None:
            value = self.store.get(key)
            for old, new in RENAMED.items():
                if new == key and value is None:
                    value = self.store.get(old)
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
            # a half-typed number is not stored: the form itself refuses it on use
            with contextlib.suppress(ValueError):
                store[key] = _coerce(kind, value)

        component.change(  # type: ignore[attr-defined]  # Gradio adds event methods at run time
            remember_value, [component], None, api_name=False, show_progress="hidden", queue=False
        )
