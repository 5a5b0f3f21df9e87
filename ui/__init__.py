"""Gradio UI for steerswarm. Gradio only: every model action goes through the
plain Python API in `steering` (and `optimize`).

`build_app` and `build_tabs` are imported on first use, so that extension.py
can read the saved-settings keys (ui.settings) at import time without
importing Gradio and torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["build_app", "build_tabs"]

if TYPE_CHECKING:
    from ui.app import build_app, build_tabs


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'ui' has no attribute {name!r}")
    from ui import app

    return getattr(app, name)
