"""The webui scenarios under Gradio 4.37, the API text-generation-webui runs.

Run by tests/e2e/test_webui_gradio4.py with .venv-gradio4's Python:
    .venv-gradio4/bin/python tests/webui/gradio4_check.py MODEL_FOLDER [SCENARIO...]
MODEL_FOLDER holds the embedded SmolLM2 GGUF (its tokenizer is all we use).
Prints one PASS/FAIL line per scenario, then a summary; exits 1 on a failure.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parents[1])]


def main(argv: list[str]) -> int:
    import gradio as gr
    import scenarios
    from transformers import AutoTokenizer

    from steering.models import EMBEDDED_GGUF

    if not gr.__version__.startswith("4."):
        print(f"this check is for Gradio 4, found {gr.__version__}")
        return 2
    tokenizer = AutoTokenizer.from_pretrained(argv[0], gguf_file=EMBEDDED_GGUF)
    names = argv[1:] or list(scenarios.GRADIO4)
    failed = []
    for name in names:
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix=f"webui-{name}-") as tmp:
            try:
                scenarios.ALL[name](Path(tmp), tokenizer)
            except Exception:  # noqa: BLE001 - reported, and the next scenario runs
                failed.append(name)
                print(f"FAIL {name}\n{traceback.format_exc()}", flush=True)
                continue
        print(f"PASS {name} ({time.perf_counter() - started:.1f} s)", flush=True)
    print(f"gradio {gr.__version__}: {len(names) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
