"""Stand-in for the webui's `modules/extensions.py`: how it loads extensions.

An extension in `extensions/<name>/` is imported as the package module
`extensions.<name>.script`; one in `user_data/extensions/<name>/` (which wins)
is imported from its file path as the top-level module `user_ext_<name>`.
After the import its `params` take the `<name>-<param>` settings, `setup()`
runs once, and later `create_extensions_tabs()` calls `ui()` inside a
`gr.Tab(display_name)` for extensions with `params["is_tab"]`. Nothing
catches an exception raised by `ui()`: it stops the whole webui.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys
from types import ModuleType
from typing import Any

from modules import shared

log = logging.getLogger("modules.extensions")

state: dict[str, list[Any]] = {}  # name -> [enabled, position on the command line]
available_extensions: list[str] = []
setup_called: set[ModuleType] = set()
loaded: dict[str, ModuleType] = {}


def apply_settings(extension: ModuleType, name: str) -> None:
    """Give `params[k]` the value of the setting `<name>-<k>` where there is one."""
    params = getattr(extension, "params", None)
    if params is None:
        return
    for param in params:
        key = f"{name}-{param}"
        if key in shared.settings:
            params[param] = shared.settings[key]


def _import(name: str) -> ModuleType:
    user_script = shared.user_data_dir / "extensions" / name / "script.py"
    if user_script.exists():
        module_name = f"user_ext_{name}"
        spec = importlib.util.spec_from_file_location(module_name, user_script)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load {user_script}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
        return module
    return importlib.import_module(f"extensions.{name}.script")


def load_extensions() -> None:
    """Import each extension named in `shared.args.extensions`, apply its
    settings and run its setup(); a failure is logged and the webui goes on."""
    for position, name in enumerate(shared.args.extensions or []):
        if name not in available_extensions:
            continue
        try:
            extension = _import(name)
            apply_settings(extension, name)
            if extension not in setup_called and hasattr(extension, "setup"):
                setup_called.add(extension)
                extension.setup()
            loaded[name] = extension
            state[name] = [True, position]
        except Exception:
            log.exception('Failed to load the extension "%s".', name)


def iterator() -> Any:
    for name in sorted(state, key=lambda n: state[n][1]):
        if state[name][0]:
            yield loaded[name], name


def create_extensions_tabs() -> None:
    """Each tab extension's ui() inside its own tab (exceptions propagate)."""
    import gradio as gr

    for extension, name in iterator():
        params = getattr(extension, "params", {})
        if hasattr(extension, "ui") and params.get("is_tab", False):
            with gr.Tab(params.get("display_name", name), elem_classes="extension-tab"):
                extension.ui()


def create_extensions_block() -> None:
    """The other extensions' ui(), one after another in a column."""
    import gradio as gr

    shown = [
        (extension, name)
        for extension, name in iterator()
        if hasattr(extension, "ui") and not getattr(extension, "params", {}).get("is_tab", False)
    ]
    if shown:
        with gr.Column(elem_id="extensions"):
            for extension, name in shown:
                gr.Markdown(f"\n### {getattr(extension, 'params', {}).get('display_name', name)}")
                extension.ui()


def apply_extensions(typ: str, *args: Any) -> Any:
    """The hooks the webui runs around a generation; only the one the
    Transformers loader calls right before `model.generate` is here:
    `logits_processor_modifier(processor_list, input_ids)`, whose list
    result replaces the processors."""
    if typ != "logits_processor":
        raise ValueError(f"the stand-in has no {typ!r} hook")
    processors, input_ids = args
    for extension, _name in iterator():
        if hasattr(extension, "logits_processor_modifier"):
            result = extension.logits_processor_modifier(processors, input_ids)
            if type(result) is list:
                processors = result
    return processors
