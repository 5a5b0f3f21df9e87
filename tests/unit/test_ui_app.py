"""The assembled app: labels the docs and browser tests rely on, the real
Gradio server driven with gradio_client, and the standalone entry point."""

from __future__ import annotations

import socket

import gradio as gr
import pytest
from gradio_client import Client, handle_file

import extension
from steering.session import ModelSession
from ui.app import build_app, build_tabs

SPEC_LABELS = {
    # Steering
    "Steering",
    "Concept prompts",
    "Contrast prompts",
    "Layer",
    "Alpha",
    "Add steering vector",
    "Active steering vectors",
    "Vector to remove",
    "Remove vector",
    "Reset steering vectors",
    "Save vectors",
    "Load vectors",
    # Chat
    "Chat",
    "Message",
    "Send",
    "Max new tokens",
    "Temperature",
    "Clear",
    "Compare with unsteered",
    "Steered",
    "Unsteered (no vectors)",
    # Optimize
    "Optimize",
    "What to steer",
    "What “better” means",
    "Time budget (minutes)",
    "Advanced",
    "Task folder",
    "Metric",
    "Limit",
    "Batch size",
    "Particles",
    "Iterations",
    "Lowest layer",
    "Highest layer",
    "Lowest alpha",
    "Highest alpha",
    "Strategy",
    "Seed",
    "Optimize vectors",
    "Cancel",
    "Convergence",
    "Evaluations",
    "Apply best",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def labels(app: gr.Blocks) -> set[str]:
    found = set()
    for component in app.config["components"]:
        props = component.get("props", {})
        for key in ("label", "value"):
            if isinstance(props.get(key), str):
                found.add(props[key])
    return found


def component(app: gr.Blocks, label: str) -> dict:
    (match,) = [c for c in app.config["components"] if c.get("props", {}).get("label") == label]
    return match


@pytest.fixture
def session(tiny_session):
    return tiny_session


@pytest.fixture
def served(session, tmp_path):
    """The real app on a free localhost port; yields a gradio_client Client."""
    app = build_app(session, tmp_path)
    app.queue()
    port = free_port()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield Client(f"http://127.0.0.1:{port}/", verbose=False)
    finally:
        app.close()


def test_every_label_of_the_spec_is_there(session, tmp_path):
    app = build_app(session, tmp_path)
    missing = SPEC_LABELS - labels(app)
    assert not missing
    layer = component(app, "Layer")["props"]
    assert (layer["minimum"], layer["maximum"]) == (0, 3)  # bounded to the tiny model's layers


def test_builds_with_no_model_and_says_so(tmp_path):
    app = build_app(ModelSession(lambda: None), tmp_path)
    assert not SPEC_LABELS - labels(app)
    texts = [c["props"].get("value") for c in app.config["components"]]
    assert "⚠ No model is loaded. Load a model first." in texts


def test_served_app_steers_and_chats(served, session, tmp_path):
    table, _choices, status = served.predict(
        "I am so happy today!\nWhat a wonderful day.",
        "I am so sad today.\nWhat a terrible day.",
        2,
        3.0,
        api_name="/add_vector",
    )
    assert status.startswith("✓ Added vector #1")
    assert table["data"][0][:3] == [1, 2, 3.0]
    assert len(session.current().steerer.vectors) == 1

    steered, unsteered, box, chat_status = served.predict("Hello!", True, 8, 0, api_name="/chat")
    assert chat_status.startswith("✓ Replied with 1 steering vector active")
    assert len(steered) == len(unsteered) == 2 and box == ""

    saved, save_status = served.predict("round trip", api_name="/save_vectors")
    if isinstance(saved, dict):  # an update that also makes the file visible
        saved = saved["value"]
    assert save_status.startswith("✓ Saved 1 vector(s)") and saved.endswith(".safetensors")
    served.predict(api_name="/reset_vectors")
    assert session.current().steerer.vectors == ()
    table, _choices, status = served.predict(handle_file(saved), api_name="/load_vectors")
    assert status.startswith("✓ Loaded 1 vector(s)")
    assert len(session.current().steerer.vectors) == 1


def test_served_app_refuses_bad_input_visibly(served, session, tmp_path):
    _table, _choices, status = served.predict("", "", 1, 3.0, api_name="/add_vector")
    assert status.startswith("⚠ Could not add the steering vector: Enter at least one concept")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"garbage")
    _table, _choices, status = served.predict(handle_file(str(bad)), api_name="/load_vectors")
    assert "not a readable steering vector file" in status
    assert session.current().steerer.vectors == ()


# -- the standalone entry point (the webui entry: test_webui_*.py) --------------


def test_main_rejects_a_missing_gguf_file(caplog):
    assert extension.main(["--gguf-file", "/no/such/model.gguf"]) == 2
    assert "GGUF file not found" in caplog.text


def test_main_loads_and_launches(monkeypatch, tiny):
    import steering.models

    launched = {}
    monkeypatch.setattr(steering.models, "load_model", lambda model, gguf: tiny)
    monkeypatch.setattr(gr.Blocks, "launch", lambda self, **kw: launched.update(kw))
    assert extension.main(["--port", "7999"]) == 0
    assert launched == {"server_name": "127.0.0.1", "server_port": 7999}


def test_main_help():
    with pytest.raises(SystemExit) as exit_info:
        extension.main(["--help"])
    assert exit_info.value.code == 0


def test_build_tabs_inside_an_open_blocks(session, tmp_path):
    with gr.Blocks() as app:
        gr.Markdown("the webui's own header")
        tabs = build_tabs(session, tmp_path)
    assert tabs.optimize is not None
    assert "Optimize vectors" in labels(app)
