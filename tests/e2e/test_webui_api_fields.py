"""Why the webui's own API cannot carry a request's `steering` field (the
reason docs/serving.md gives), checked on the real text-generation-webui
built by scripts/install_webui.sh, with its own Python: its completion
request models (modules/api/typing.py) are pydantic models with the default
`extra="ignore"`, so an unknown field is dropped when the body is parsed,
and the routes hand `to_dict(request_data)` (the parsed fields only) to the
generation; no extension hook ever sees the field."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.webui

TREE = Path(__file__).resolve().parents[2] / ".webui" / "text-generation-webui"

PROBE = """
import json
from modules.api.typing import ChatCompletionRequest, CompletionRequest, to_dict
steering = {"vectors": [{"name": "joy", "strength": 0.3}]}
chat = ChatCompletionRequest(messages=[{"role": "user", "content": "hi"}], steering=steering)
plain = CompletionRequest(prompt="hi", steering=steering)
print(json.dumps({
    "chat": sorted(to_dict(chat)),
    "completion": sorted(to_dict(plain)),
    "extra": [ChatCompletionRequest.model_config.get("extra"),
              CompletionRequest.model_config.get("extra")],
}))
"""


def test_the_webuis_request_models_drop_the_steering_field(real_webui_built):
    done = subprocess.run(
        [str(TREE / "venv" / "bin" / "python"), "-c", PROBE],
        cwd=TREE, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
    fields = json.loads(done.stdout.strip().splitlines()[-1])
    assert "messages" in fields["chat"] and "prompt" in fields["completion"]
    assert "steering" not in fields["chat"] and "steering" not in fields["completion"]
    assert fields["extra"] == [None, None]  # pydantic's default: extra fields are ignored
    routes = (TREE / "modules" / "api" / "script.py").read_text()
    assert routes.count("to_dict(request_data)") >= 4  # what the completion routes pass on
