"""Starting and driving the real text-generation-webui built by scripts/install_webui.sh.

`RealWebui.start()` refreshes the extension's files from the working tree
(scripts/sync_webui_extension.sh), starts `server.py --extensions steerswarm
--api --cpu` with SmolLM2 on the Transformers loader on free loopback ports,
and waits until both the UI and the API answer. `stop()` ends the server's
whole process group. `chat()` and the model calls go through the webui's
OpenAI-compatible API, as a user's script would.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
TREE = ROOT / ".webui" / "text-generation-webui"
PYTHON = TREE / "venv" / "bin" / "python"
SERVE = Path(__file__).resolve().parent / "serve_real.py"  # server.py, patient at start-up
EXTENSION = "steerswarm"
MODEL = "SmolLM2-135M-Instruct"
READY_TIMEOUT_S = 300
REQUEST_TIMEOUT_S = 240

# The webui's settings for the tests: greedy (its "Deterministic" preset's values)
# and short replies, so a reply that never reaches end-of-text still ends.
SETTINGS = (
    "preset: Deterministic\n"
    "do_sample: false\n"
    "top_k: 1\n"
    "seed: 0\n"
    "max_new_tokens: 48\n"
    "auto_max_new_tokens: false\n"
    "mode: instruct\n"
    "dark_theme: true\n"
    "show_controls: false\n"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_json(url: str, body: dict[str, Any] | None = None, timeout: float = 30) -> Any:
    """GET (body None) or POST JSON; the decoded JSON reply."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, headers={"Content-Type": "application/json"} if data else {}
    )
    with urllib.request.urlopen(request, timeout=timeout) as reply:
        text = reply.read().decode()
    return json.loads(text) if text.strip() else None


@dataclass
class RealWebui:
    """One webui server for a test module."""

    workdir: Path
    port: int = field(default_factory=free_port)
    api_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}/v1"

    @property
    def log_path(self) -> Path:
        return self.workdir / "server.log"

    def log_tail(self, chars: int = 6000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def start(self) -> RealWebui:
        if not PYTHON.exists():
            raise RuntimeError(
                f"The real webui is not built ({PYTHON} is missing): run "
                "scripts/install_webui.sh (scripts/install.sh --test does)."
            )
        subprocess.run(["bash", str(ROOT / "scripts/sync_webui_extension.sh")], check=True)
        settings = self.workdir / "settings.yaml"
        settings.write_text(SETTINGS)
        env = dict(
            os.environ,
            OMP_NUM_THREADS="1",
            HF_HUB_OFFLINE="1",
            TRANSFORMERS_OFFLINE="1",
            GRADIO_ANALYTICS_ENABLED="False",
            PYTHONUNBUFFERED="1",
        )
        for name in ("PYTHONPATH", "VIRTUAL_ENV"):  # the test's own Python must not leak in
            env.pop(name, None)
        command = [
            str(PYTHON), str(SERVE),  "--cpu", "--extensions", EXTENSION, "--api",
            "--listen-port", str(self.port), "--api-port", str(self.api_port),
            "--model", MODEL, "--loader", "Transformers", "--settings", str(settings),
        ]
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                command, cwd=TREE, env=env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(
                    f"the webui exited ({self.process.returncode}):\n{self.log_tail()}"
                )
            try:
                info = http_json(f"{self.api}/internal/model/info", timeout=5)
                urllib.request.urlopen(self.url, timeout=5).close()
                if info and info.get("model_name") == MODEL:
                    return
            except (OSError, urllib.error.URLError, ValueError):
                pass
            time.sleep(1)
        raise RuntimeError(f"the webui was not ready in {READY_TIMEOUT_S} s:\n{self.log_tail()}")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=20)

    # -- the API, as a user's script uses it ------------------------------------

    def chat(self, message: str, max_tokens: int = 48) -> str:
        """A greedy reply from /v1/chat/completions."""
        return self.chat_finish(message, max_tokens)[0]

    def chat_finish(self, message: str, max_tokens: int = 48) -> tuple[str, str]:
        """A greedy reply from /v1/chat/completions and why it ended
        ("stop": end-of-text; "length": the token limit)."""
        reply = http_json(
            f"{self.api}/chat/completions",
            {
                "messages": [{"role": "user", "content": message}],
                "temperature": 0,
                "max_tokens": max_tokens,
                "seed": 0,
            },
            timeout=REQUEST_TIMEOUT_S,
        )
        choice = reply["choices"][0]
        return str(choice["message"]["content"]).strip(), str(choice.get("finish_reason"))

    def unload(self) -> None:
        http_json(f"{self.api}/internal/model/unload", {}, timeout=REQUEST_TIMEOUT_S)

    def load(self) -> None:
        http_json(
            f"{self.api}/internal/model/load",
            {"model_name": MODEL, "args": {"loader": "Transformers", "cpu": True}},
            timeout=REQUEST_TIMEOUT_S,
        )

    def model_name(self) -> str:
        return str(http_json(f"{self.api}/internal/model/info", timeout=30)["model_name"])
