"""A stand-in text-generation-webui in one process, for tests under any Gradio.

`Webui` lays out a webui folder whose `extensions/steerswarm` (or
`user_data/extensions/steerswarm`) is this repository, puts the stand-in
`modules` package (tests/webui/standin/modules) first on sys.path, loads the
extension the way the webui does and builds its page: the extension's tab
inside `gr.Blocks`. The handlers are then called as Gradio calls them, found
by the events the page registered.

Plain Python, no pytest: the Gradio 4 check (tests/webui/gradio4_check.py)
runs the same scenarios in .venv-gradio4.
"""

from __future__ import annotations

import contextlib
import gc
import os
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import gradio as gr
import torch
from transformers import LlamaConfig, LlamaForCausalLM

REPO = Path(__file__).resolve().parents[2]
STANDIN = Path(__file__).resolve().parent / "standin"  # holds the `modules` stand-in
NAME = "steerswarm"
ROUTES = ("extensions", "user_data")  # extensions/<name> and user_data/extensions/<name>

# Modules that belong to one stand-in webui and go with it.
_OWN_MODULES = ("modules", "extensions", "user_data", f"user_ext_{NAME}", "steerswarm_extension")


def tiny_llama(tokenizer: Any, seed: int = 0, hidden_size: int = 32, layers: int = 4) -> Any:
    """A tiny randomly initialised Llama sharing SmolLM2's tokenizer."""
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return LlamaForCausalLM(config).eval()


def _purge() -> None:
    for name in list(sys.modules):
        if name.split(".")[0] in _OWN_MODULES:
            del sys.modules[name]


def last(value: Any) -> Any:
    """A handler's final output (generators are run to the end)."""
    if isinstance(value, Iterator):
        last = None
        for out in value:
            last = out
        return last
    return value


class Webui:
    """One stand-in webui: enter it, `load()` the extension, `build()` the page."""

    def __init__(self, root: Path, route: str = "extensions") -> None:
        if route not in ROUTES:
            raise ValueError(f"route must be one of {ROUTES}, got {route!r}")
        self.root = Path(root)
        self.route = route
        self.page: gr.Blocks | None = None
        self.script: ModuleType | None = None

    # -- the process around it -------------------------------------------

    def __enter__(self) -> Webui:
        folder = self.root / "extensions" if self.route == "extensions" else (
            self.root / "user_data" / "extensions"
        )
        folder.mkdir(parents=True, exist_ok=True)
        (self.root / "user_data").mkdir(exist_ok=True)
        link = folder / NAME
        if not link.exists():
            link.symlink_to(REPO, target_is_directory=True)
        self._cwd = os.getcwd()
        self._path = list(sys.path)
        import extension  # the repository's own; its params are restored on exit

        self._extension = extension
        self._params = dict(extension.params)
        _purge()
        os.chdir(self.root)
        sys.path[:0] = [str(STANDIN), str(self.root)]
        from modules import extensions, shared

        self.shared, self.extensions = shared, extensions
        shared.generation_lock = threading.Lock()  # as server.py does before the UI
        shared.args.extensions = [NAME]
        extensions.available_extensions = [NAME]
        return self

    def __exit__(self, *exc: object) -> None:
        if self.page is not None:
            # a page the run already broke must not hide the test's own failure
            with contextlib.suppress(Exception):
                self.page.close()
        self.shared.model = self.shared.tokenizer = None
        _purge()
        sys.path[:] = self._path
        os.chdir(self._cwd)
        self._extension.params.clear()
        self._extension.params.update(self._params)
        gc.collect()

    # -- what the webui does -----------------------------------------------

    def set_model(self, model: Any, tokenizer: Any = None, name: str = "tiny-webui") -> None:
        """Load (or, with None, unload) a model the way the webui's loaders do."""
        self.shared.model = model
        self.shared.tokenizer = tokenizer if model is not None else None
        self.shared.model_name = name if model is not None else "None"
        if model is None:
            gc.collect()  # the webui's unload_model() collects garbage too

    def load(self) -> ModuleType:
        """Import the extension, apply its settings and run setup(), as the webui does."""
        self.extensions.load_extensions()
        if NAME not in self.extensions.loaded:
            raise AssertionError("the webui could not load the extension (see the log)")
        self.script = self.extensions.loaded[NAME]
        return self.script

    def build(self) -> gr.Blocks:
        """The page: a header of the webui's, then the extension tabs."""
        with gr.Blocks(title="Text generation web UI (stand-in)") as page:
            with gr.Tab("Chat"):
                gr.Markdown("The webui's own chat")
            self.extensions.create_extensions_tabs()
        self.page = page
        return page

    # -- finding what the page registered ----------------------------------

    def _functions(self) -> list[Any]:
        assert self.page is not None, "build() the page first"
        fns = self.page.fns
        return list(fns.values()) if isinstance(fns, dict) else list(fns)

    def handler(self, api_name: str) -> Callable[..., Any]:
        """The function wired to the event with this API name."""
        found = [f for f in self._functions() if f.api_name == api_name]
        if len(found) != 1:
            raise AssertionError(f"{len(found)} handlers named {api_name!r}")
        return found[0].fn

    def call(self, api_name: str, *args: Any) -> Any:
        """Call a handler as Gradio does and return its final output."""
        return last(self.handler(api_name)(*args))

    def component(self, label: str) -> Any:
        """The form field (Number, Slider, Textbox or Dropdown) with this label."""
        assert self.page is not None, "build() the page first"
        fields = (gr.Number, gr.Slider, gr.Textbox, gr.Dropdown)
        found = [
            b
            for b in self.page.blocks.values()
            if getattr(b, "label", None) == label and isinstance(b, fields)
        ]
        if len(found) != 1:
            raise AssertionError(f"{len(found)} components labelled {label!r}")
        return found[0]

    def on_change(self, label: str) -> Callable[..., Any]:
        """The function the page runs when the component with this label
        changes, to remember its value: the one with no outputs (the Optimize
        tab's size fields also update its "Before you start" line)."""
        block = self.component(label)
        found = [
            f
            for f in self._functions()
            if (block._id, "change") in [(t[0], t[1]) for t in f.targets] and not f.outputs
        ]
        if len(found) != 1:
            raise AssertionError(f"{len(found)} change handlers on {label!r}")
        return found[0].fn

    def texts(self) -> list[str]:
        """Every label and text value on the page."""
        assert self.page is not None, "build() the page first"
        found = []
        for component in self.page.config["components"]:
            props = component.get("props", {})
            found.extend(
                props[key] for key in ("label", "value") if isinstance(props.get(key), str)
            )
        return found
