"""The webui scenarios again under Gradio 4.37, the API text-generation-webui runs.

The webui ships its own fork of Gradio 4.37.2; stock gradio 4.37.2 stands in
for it in .venv-gradio4 (made by scripts/install_gradio4.sh, which
`scripts/install.sh --test` runs). This test runs tests/webui/gradio4_check.py
there: the same scenarios as test_webui_extension.py, in a Python whose
Gradio really is 4.37 (the loads, the tab built by ui() inside gr.Blocks, the
handlers driven, the page served and driven with Gradio 4's client).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import scenarios  # tests/webui, put on the path by tests/conftest.py

from steering.models import embedded_model_folder

ROOT = Path(__file__).resolve().parents[2]


def test_the_webui_scenarios_pass_under_gradio_4(gradio4_python):
    done = subprocess.run(
        [str(gradio4_python), str(ROOT / "tests" / "webui" / "gradio4_check.py"),
         str(embedded_model_folder())],
        capture_output=True, text=True, timeout=600, cwd=ROOT, check=False,
    )
    output = done.stdout + done.stderr[-4000:]
    passed = [line.split()[1] for line in done.stdout.splitlines() if line.startswith("PASS ")]
    assert done.returncode == 0, output
    assert sorted(passed) == sorted(scenarios.GRADIO4), output
    assert f"gradio 4.37.2: {len(scenarios.GRADIO4)} passed, 0 failed" in done.stdout, output
