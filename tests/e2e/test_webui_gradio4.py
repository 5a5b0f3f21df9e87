"""The webui scenarios again under Gradio 4.37, the API text-generation-webui runs.

The webui ships its own fork of Gradio 4.37.2; stock gradio 4.37.2 stands in
for it in .venv-gradio4 (made by scripts/install_gradio4.sh, which
`scripts/install.sh --test` runs). This test runs tests/webui/gradio4_check.py
there: the same scenarios as test_webui_extension.py, in a Python whose
Gradio really is 4.37 (the loads, the tab built by ui() inside gr.Blocks, the
handlers driven, the page served and driven with Gradio 4's client).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from steering.models import embedded_model_folder

ROOT = Path(__file__).resolve().parents[2]
GRADIO4_PYTHON = Path(
    os.environ.get("STEERSWARM_GRADIO4_PYTHON", ROOT / ".venv-gradio4" / "bin" / "python")
)

sys.path.insert(0, str(ROOT / "tests" / "webui"))

import scenarios  # noqa: E402


def test_the_webui_scenarios_pass_under_gradio_4():
    if not GRADIO4_PYTHON.exists():
        pytest.fail(
            f"No Gradio 4 environment at {GRADIO4_PYTHON}: run scripts/install_gradio4.sh "
            "(scripts/install.sh --test does) or set STEERSWARM_GRADIO4_PYTHON."
        )
    done = subprocess.run(
        [str(GRADIO4_PYTHON), str(ROOT / "tests" / "webui" / "gradio4_check.py"),
         str(embedded_model_folder())],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )  # fmt: skip
    output = done.stdout + done.stderr[-4000:]
    passed = [line.split()[1] for line in done.stdout.splitlines() if line.startswith("PASS ")]
    assert done.returncode == 0, output
    assert sorted(passed) == sorted(scenarios.GRADIO4), output
    assert f"gradio 4.37.2: {len(scenarios.GRADIO4)} passed, 0 failed" in done.stdout, output
