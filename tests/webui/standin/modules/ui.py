"""Stand-in for the part of the webui's `modules/ui.py` that saves extension
parameters: on "Save settings", every parameter of every active extension is
written as `<name>-<param>` into user_data/settings.yaml, unless it equals the
webui's own default setting of the same bare name."""

from __future__ import annotations

from typing import Any

from modules import extensions, shared


def extension_settings(extension_names: list[str]) -> dict[str, Any]:
    """The `<name>-<param>` entries "Save settings" writes for these extensions."""
    output: dict[str, Any] = {}
    for name in extension_names:
        extension = extensions.loaded.get(name)
        params = getattr(extension, "params", None)
        if params is None:
            continue
        for param, value in params.items():
            if param not in shared.default_settings or value != shared.default_settings[param]:
                output[f"{name}-{param}"] = value
    return output
