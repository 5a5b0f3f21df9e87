"""Runs the real webui's server.py, with one change for busy test machines.

Gradio's launch() checks that its own page answers a HEAD request within
3 seconds and exits when one times out. On a busy 2-core machine rendering
the webui's page takes longer, so the check waits up to 60 seconds here;
nothing else differs from `python server.py ARGS`. Run from the webui folder:
`venv/bin/python PATH/serve_real.py ARGS`.
"""

import runpy
import sys
import time

import gradio.networking
import httpx

PATIENCE_S = 60


def url_ok(url: str) -> bool:
    deadline = time.monotonic() + PATIENCE_S
    while time.monotonic() < deadline:
        try:
            if httpx.head(url, timeout=PATIENCE_S, verify=False).status_code in (200, 401, 302):
                return True
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    return False


gradio.networking.url_ok = url_ok
sys.argv = ["server.py", *sys.argv[1:]]
sys.path.insert(0, ".")
runpy.run_path("server.py", run_name="__main__")
