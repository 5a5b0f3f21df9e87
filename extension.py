"""steerswarm as a text-generation-webui extension, and as a standalone app.

In the webui (through script.py): `setup()` binds a ModelSession to the
webui's loaded model and generation lock, and `ui()` builds the tabs inside
the tab the webui opens for us. Standalone: `python extension.py [--model
PATH] [--gguf-file FILE] [--host 127.0.0.1] [--port 7860]` loads a model
(the embedded SmolLM2-135M-Instruct by default) and serves the same tabs.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
if str(_HERE) not in sys.path:
    sys.path.insert(0, str(_HERE))  # steering/, ui/ and optimize/ live beside this file

log = logging.getLogger("steerswarm")

__all__ = ["main", "params", "setup", "ui"]

params = {"display_name": "Activation Steering", "is_tab": True}

# The webui calls setup() once and ui() later, as plain functions: the session
# made by the one is what the other builds on.
_webui: dict[str, Any] = {}


def _webui_model() -> Any:
    """The model the webui has loaded now, as a LoadedModel (or None)."""
    from modules import shared  # type: ignore[import-not-found]

    from steering.models import LoadedModel

    model = getattr(shared, "model", None)
    tokenizer = getattr(shared, "tokenizer", None)
    if model is None or tokenizer is None:
        return None
    return LoadedModel(model=model, tokenizer=tokenizer, name=str(shared.model_name or "model"))


def setup() -> None:
    """Bind a ModelSession to the webui's model (when running inside the webui)."""
    from steering.session import ModelSession

    try:
        from modules import shared  # type: ignore[import-not-found]
    except ImportError:
        log.info("modules.shared is not importable: not running inside text-generation-webui")
        return
    _webui["session"] = ModelSession(_webui_model, lock=getattr(shared, "generation_lock", None))


def ui() -> None:
    """Build the tabs in the webui's open Blocks context. Never raises: an
    exception here would stop the whole webui."""
    try:
        import gradio as gr
    except Exception:  # pragma: no cover - the webui always has gradio
        log.exception("steerswarm: gradio is not importable")
        return
    try:
        from steering.session import ModelSession
        from ui.app import build_tabs

        session = _webui.get("session")
        if session is None:
            session = ModelSession(lambda: None)
        build_tabs(session)
    except Exception as exc:
        log.exception("steerswarm: building the tabs failed")
        try:
            gr.Markdown(f"⚠️ Activation Steering could not start: {type(exc).__name__}: {exc}")
        except Exception:
            log.exception("steerswarm: could not show the error either")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python extension.py",
        description="Serve the steerswarm activation-steering app (Steering, Chat, Optimize).",
    )
    parser.add_argument(
        "--model",
        default=None,
        help="local model folder or hub id (default: the embedded SmolLM2-135M-Instruct)",
    )
    parser.add_argument(
        "--gguf-file",
        default=None,
        help="GGUF file inside --model, or a path to one when --model is not given",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on")
    parser.add_argument("--port", type=int, default=7860, help="port to serve on")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Load the model and serve the app until interrupted; returns an exit code."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

    from steering.errors import SteerSwarmError
    from steering.models import load_model
    from steering.session import ModelSession
    from ui.app import build_app

    try:
        loaded = load_model(args.model, args.gguf_file)
    except SteerSwarmError as exc:
        log.error("%s", exc)
        return 2
    session = ModelSession(lambda: loaded)
    app = build_app(session)
    app.queue()
    log.info("serving on http://%s:%d", args.host, args.port)
    app.launch(server_name=args.host, server_port=args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
