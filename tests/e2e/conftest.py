"""What the end-to-end tests share: one headless Chromium for the session, apps
served on free loopback ports, the folder screenshots go to, and the checks
that the side environments and the real webui are installed.

Each requirement goes through the `require` fixture (tests/conftest.py):
missing, it skips with the reason in the fast tier and fails in the full tier.
The real webui is the exception: when scripts/install_webui.sh found no source
for it, it wrote why to .webui/UNAVAILABLE, and its tests skip with that reason
in both tiers.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WEBUI = ROOT / ".webui"
GRADIO4_PYTHON = Path(
    os.environ.get("STEERSWARM_GRADIO4_PYTHON", ROOT / ".venv-gradio4" / "bin" / "python")
)
REPENG_PYTHON = Path(
    os.environ.get("STEERSWARM_REPENG_PYTHON", ROOT / ".venv-repeng" / "bin" / "python")
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def browser(require: Callable[[bool, str], None]) -> Iterator[Any]:
    """Debian's Chromium, headless, driven by Playwright (whose own browser
    download does not work offline)."""
    require(
        CHROMIUM.exists(),
        f"No Chromium at {CHROMIUM}: install it with `apt-get install chromium` "
        "(scripts/install.sh --test does).",
    )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def serve() -> Iterator[Callable[..., str]]:
    """`serve(app, **launch_options)`: the Gradio app queued and launched on a
    free loopback port, its URL returned; closed when the test module ends."""
    launched: list[Any] = []

    def start(app: Any, **options: Any) -> str:
        app.queue()
        port = free_port()
        app.launch(
            server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
            **options,
        )
        launched.append(app)
        return f"http://127.0.0.1:{port}/"

    try:
        yield start
    finally:
        for app in launched:
            app.close()


@pytest.fixture(scope="session")
def screenshot_dir() -> Path:
    """Where screenshots go: tests/artifacts/screenshots (ignored by git), or
    STEERSWARM_SCREENSHOT_DIR (docs/screenshots refreshes the docs' images)."""
    folder = Path(os.environ.get("STEERSWARM_SCREENSHOT_DIR", ROOT / "tests/artifacts/screenshots"))
    folder = folder if folder.is_absolute() else ROOT / folder
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def gradio4_python(require: Callable[[bool, str], None]) -> Path:
    """The Python of .venv-gradio4 (stock Gradio 4.37.2, standing in for the
    webui's fork)."""
    require(
        GRADIO4_PYTHON.exists(),
        f"No Gradio 4 environment at {GRADIO4_PYTHON}: run scripts/install_gradio4.sh "
        "(scripts/install.sh --test does) or set STEERSWARM_GRADIO4_PYTHON.",
    )
    return GRADIO4_PYTHON


@pytest.fixture(scope="session")
def repeng_python(require: Callable[[bool, str], None]) -> Path:
    """The Python of .venv-repeng (repeng 0.4.0 with the numpy < 2 it needs)."""
    require(
        REPENG_PYTHON.exists(),
        f"No repeng environment at {REPENG_PYTHON}: run scripts/install_repeng.sh "
        "(scripts/install.sh --test does) or set STEERSWARM_REPENG_PYTHON.",
    )
    return REPENG_PYTHON


@pytest.fixture(scope="session")
def real_webui_built(require: Callable[[bool, str], None]) -> Path:
    """The real webui's folder, built by scripts/install_webui.sh."""
    unavailable = WEBUI / "UNAVAILABLE"
    if unavailable.exists():
        pytest.skip(f"the real webui: {unavailable.read_text().strip()}")
    require(
        (WEBUI / "READY").exists(),
        f"The real webui is not built in {WEBUI}: run scripts/install_webui.sh "
        "(scripts/install.sh --test does).",
    )
    return WEBUI / "text-generation-webui"
