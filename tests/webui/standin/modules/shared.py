"""Stand-in for the webui's `modules/shared.py`: module globals, nothing else.

The webui's loaders assign `model` and `tokenizer` (None after an unload, a
`PeftModel` after a LoRA is applied, a llama.cpp server object with another
loader); `model_name` is the string "None" when nothing is loaded. server.py
replaces `generation_lock` with a `threading.Lock()` before it builds the UI
and holds it around every generation. `settings` starts from these defaults,
then takes the keys of user_data/settings.yaml (extension parameters appear
there as `<extension>-<param>`).
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path
from typing import Any

# Model variables
model: Any = None
tokenizer: Any = None
model_name = "None"
is_seq2seq = False
model_dirty_from_training = False
lora_names: list[str] = []

# Generation variables
stop_everything = False
generation_lock: Any = None
processing_message = "*Is typing...*"

# UI variables
gradio: dict[str, Any] = {}
persistent_interface_state: dict[str, Any] = {}
need_restart = False

user_data_dir = Path("user_data")

# UI defaults (a few of the webui's; the names extensions must not shadow)
settings: dict[str, Any] = {
    "show_controls": True,
    "mode": "chat-instruct",
    "preset": "min_p",
    "max_new_tokens": 512,
    "truncation_length": 8192,
    "seed": -1,
    "temperature": 0.6,
    "dark_theme": True,
    "default_extensions": [],
}

default_settings = copy.deepcopy(settings)

args = argparse.Namespace(
    extensions=[],
    multi_user=False,
    loader="Transformers",
    model=None,
    lora=None,
    nowebui=False,
    api=False,
    portable=False,
)
