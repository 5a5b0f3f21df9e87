"""`python extension.py --api`: the standalone app serves the OpenAI-compatible
API beside its tabs, in the same process and on the same model (the tiny
Llama here), with the key from the flag or the environment, and stops it
with the app; a taken port is a clear error before anything is served."""

from __future__ import annotations

import socket

import gradio as gr
import httpx
import openai
import pytest

import extension
from steering import capture_vector, save_vectors, steerer_for


@pytest.fixture
def app_model(monkeypatch, tiny):
    import steering.models

    monkeypatch.setattr(steering.models, "load_model", lambda model, gguf: tiny)
    steerer = steerer_for(tiny.model, tiny.tokenizer, tiny.name)
    steerer.reset()
    yield tiny
    steerer.reset()


def test_the_app_serves_the_api_on_its_own_model(app_model, tmp_path, monkeypatch, unused_port):
    steerer = steerer_for(app_model.model, app_model.tokenizer, app_model.name)
    joy = capture_vector(steerer, ["I love it"], 2, 6.0, ["I hate it"])
    save_vectors(tmp_path / "vectors" / "joy.safetensors", [joy], steerer.info)
    port = unused_port
    url = f"http://127.0.0.1:{port}/v1"
    seen = {}

    def launch(self, **kwargs):  # the Gradio app would serve until Ctrl-C; the API runs now
        client = openai.OpenAI(base_url=url, api_key="from-the-environment", max_retries=0)
        seen["models"] = [m.id for m in client.models.list().data]
        reply = client.chat.completions.create(
            model="tiny-llama", messages=[{"role": "user", "content": "Hi"}], max_tokens=5,
            extra_body={"steering": {"vectors": [{"name": "joy"}]}},
        )
        seen["steering"] = reply.model_extra["steering"]
        seen["no key"] = httpx.get(f"{url}/models").status_code

    monkeypatch.setattr(gr.Blocks, "launch", launch)
    monkeypatch.setenv(extension.API_KEY_VARIABLE, "from-the-environment")
    argv = ["--data-dir", str(tmp_path), "--api", "--api-port", str(port)]
    assert extension.main(argv) == 0
    assert seen["models"] == ["tiny-llama"] and seen["no key"] == 401
    assert [(s["id"], s["layer"], s["alpha"]) for s in seen["steering"]] == [(joy.id, 2, 6.0)]
    with pytest.raises(httpx.ConnectError):  # stopped with the app
        httpx.get(f"{url}/models")


def test_a_taken_port_is_refused_before_serving(app_model, tmp_path, monkeypatch, caplog):
    launched = []
    monkeypatch.setattr(gr.Blocks, "launch", lambda self, **kw: launched.append(kw))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        argv = ["--data-dir", str(tmp_path), "--api", "--api-port", str(port)]
        assert extension.main(argv) == 2
    assert f"cannot listen on 127.0.0.1:{port}" in caplog.text and not launched


def test_the_api_is_off_unless_asked(app_model, tmp_path, monkeypatch, unused_port):
    port = unused_port
    monkeypatch.setattr(gr.Blocks, "launch", lambda self, **kw: None)
    assert extension.main(["--data-dir", str(tmp_path), "--api-port", str(port)]) == 0
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", port))  # nothing listened there
