"""text-generation-webui entry point: everything lives in extension.py.

The webui imports this file as `extensions.<name>.script`, or, from
user_data/extensions, by its file path as the top-level module
`user_ext_<name>`. Neither gives us a package to import relative to, so this
folder goes on sys.path and `extension`, `steering`, `ui` and `optimize`
import as top-level modules in both cases. Should another extension already
have a module called `extension`, ours is loaded from its path under a name
of its own instead.
"""

import importlib
import importlib.util
import os
import sys
from types import ModuleType

_HERE = os.path.dirname(os.path.realpath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)


def _load_extension() -> ModuleType:
    path = os.path.join(_HERE, "extension.py")
    module = sys.modules.get("extension") or importlib.import_module("extension")
    if os.path.realpath(getattr(module, "__file__", "") or "") == path:
        return module
    name = "steerswarm_extension"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load the extension from {path}")
        loaded = importlib.util.module_from_spec(spec)
        sys.modules[name] = loaded
        spec.loader.exec_module(loaded)
    return sys.modules[name]


_extension = _load_extension()
params = _extension.params
setup = _extension.setup
ui = _extension.ui
main = _extension.main
logits_processor_modifier = _extension.logits_processor_modifier
state_modifier = _extension.state_modifier
custom_css = _extension.custom_css

__all__ = [
    "custom_css", "logits_processor_modifier", "main", "params", "setup", "state_modifier", "ui"
]
