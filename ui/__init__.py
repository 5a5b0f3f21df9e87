"""Gradio UI for steerswarm. Gradio only: every model action goes through the
plain Python API in `steering` (and `optimize`)."""

from ui.app import build_app, build_tabs

__all__ = ["build_app", "build_tabs"]
