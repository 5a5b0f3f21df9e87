"""The assembled app: labels the docs and browser tests rely on, the real
Gradio server driven with gradio_client, and the extension entry points."""

from __future__ import annotations

import importlib
import importlib.util
import os
import socket
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import gradio as gr
import pytest
from gradio_client import Client, handle_file

import extension
from steering import steerer_for
from steering.session import ModelSession
from ui.app import build_app, build_tabs

ROOT = Path(__file__).resolve().parent.parent

SPEC_LABELS = {
    # Steering
    "Steering",
    "Concept prompts",
    "Contrast prompts",
    "Layer",
    "Coefficient",
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
    "Vectors to optimize",
    "Task",
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
    "PSO options",
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
def session(tiny):
    steerer = steerer_for(tiny.model, tiny.tokenizer, tiny.name)
    steerer.reset()
    yield ModelSession(lambda: tiny)
    steerer.reset()


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


# -- the extension entry points ------------------------------------------------


def test_extension_params():
    assert extension.params == {"display_name": "Activation Steering", "is_tab": True}


def test_ui_builds_without_the_webui(monkeypatch):
    monkeypatch.setattr(extension, "_webui", {})
    with gr.Blocks() as app:
        extension.ui()
    assert "Add steering vector" in labels(app)


def test_ui_never_raises(monkeypatch):
    """An exception in an extension's ui() would stop the whole webui."""
    import ui.app

    def broken(session):
        raise TypeError("Slider.__init__() got an unexpected keyword argument 'min'")

    monkeypatch.setattr(ui.app, "build_tabs", broken)
    with gr.Blocks() as app:
        extension.ui()
    texts = [c["props"].get("value") for c in app.config["components"]]
    assert any("Activation Steering could not start: TypeError" in str(t) for t in texts)


def test_setup_binds_the_webui_model_and_lock(monkeypatch, tiny):
    import threading

    shared = types.ModuleType("modules.shared")
    shared.model, shared.tokenizer, shared.model_name = tiny.model, tiny.tokenizer, "tiny-webui"
    shared.generation_lock = threading.Lock()
    modules = types.ModuleType("modules")
    modules.shared = shared
    monkeypatch.setitem(sys.modules, "modules", modules)
    monkeypatch.setitem(sys.modules, "modules.shared", shared)
    monkeypatch.setattr(extension, "_webui", {})

    extension.setup()
    session = extension._webui["session"]
    assert session.lock is shared.generation_lock
    assert session.current().steerer.info.name == "tiny-webui"
    with gr.Blocks() as app:
        extension.ui()
    assert component(app, "Layer")["props"]["maximum"] == 3
    shared.model = None  # the user unloads the model
    with pytest.raises(Exception, match="No model is loaded"):
        session.current()


def test_setup_outside_the_webui_does_nothing(monkeypatch):
    monkeypatch.setattr(extension, "_webui", {})
    monkeypatch.setitem(sys.modules, "modules", None)  # import fails
    extension.setup()
    assert extension._webui == {}


def test_script_loads_by_file_path():
    spec = importlib.util.spec_from_file_location("user_ext_steerswarm", ROOT / "script.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.params is extension.params  # the webui's settings reach extension.params
    assert module.ui is extension.ui and module.setup is extension.setup


def test_script_loads_as_a_webui_package(tmp_path, monkeypatch):
    (tmp_path / "extensions").mkdir()
    (tmp_path / "extensions" / "steerswarm").symlink_to(ROOT, target_is_directory=True)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        module = importlib.import_module("extensions.steerswarm.script")
        assert module.params["display_name"] == "Activation Steering"
        assert callable(module.ui) and callable(module.setup)
    finally:
        for name in [n for n in sys.modules if n.startswith("extensions")]:
            del sys.modules[name]


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


GRADIO4 = os.environ.get("STEERSWARM_GRADIO4_PYTHON")

_GRADIO4_SCRIPT = textwrap.dedent(
    """
    import socket, sys
    sys.path.insert(0, sys.argv[1]); sys.path.insert(0, sys.argv[1] + "/tests")
    import gradio as gr
    assert gr.__version__.startswith("4."), gr.__version__
    from gradio_client import Client
    from transformers import AutoTokenizer
    from conftest import _tiny_llama
    from steering.models import EMBEDDED_GGUF, LoadedModel, embedded_model_folder
    from steering.session import ModelSession
    from ui.app import build_app, build_tabs
    import extension

    with gr.Blocks():
        extension.ui()  # no webui model: must still build
    tok = AutoTokenizer.from_pretrained(str(embedded_model_folder()), gguf_file=EMBEDDED_GGUF)
    tiny = LoadedModel(_tiny_llama(tok, 0), tok, "tiny")
    app = build_app(ModelSession(lambda: tiny))
    app.queue()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    client = Client(f"http://127.0.0.1:{port}/", verbose=False)
    status = client.predict("good day", "bad day", 1, 2.0, api_name="/add_vector")[2]
    assert status.startswith("✓ Added"), status
    steered, unsteered, box, status = client.predict("Hi", True, 6, 0, api_name="/chat")
    assert status.startswith("✓ Replied"), status
    assert steered[0][0] == "Hi" and unsteered[0][0] == "Hi", steered  # [user, bot] pairs
    app.close()
    print("GRADIO4 OK", gr.__version__)
    """
)


@pytest.mark.skipif(
    not GRADIO4,
    reason="set STEERSWARM_GRADIO4_PYTHON to a Python with gradio 4.37 and this project's "
    "dependencies to check the tabs in the webui's Gradio",
)
def test_tabs_work_in_gradio_4(tmp_path):
    """The webui runs Gradio 4.37: the same tabs must build and work there."""
    script = tmp_path / "gradio4_check.py"
    script.write_text(_GRADIO4_SCRIPT)
    done = subprocess.run(
        [GRADIO4, str(script), str(ROOT)], check=False, capture_output=True, text=True, timeout=300
    )
    assert "GRADIO4 OK 4." in done.stdout, done.stdout[-3000:] + done.stderr[-3000:]


def test_build_tabs_inside_an_open_blocks(session, tmp_path):
    with gr.Blocks() as app:
        gr.Markdown("the webui's own header")
        tabs = build_tabs(session, tmp_path)
    assert tabs.optimize is not None
    assert "Optimize vectors" in labels(app)
