"""The extension inside a stand-in text-generation-webui, under this Gradio.

tests/webui/standin/modules mirrors the webui's `modules` package; tests/webui/harness
loads the extension the way the webui does (by both of its import routes),
builds `ui()` inside `gr.Blocks` and drives the handlers the page registered.
The scenarios live in tests/webui/scenarios.py so that test_webui_gradio4.py
runs the very same ones under Gradio 4.37.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import scenarios  # tests/webui, put on the path by tests/conftest.py


@pytest.mark.parametrize("name", list(scenarios.ALL))
def test_scenario(name, tmp_path, tokenizer):
    scenarios.ALL[name](tmp_path, tokenizer)


# -- the entry points themselves ------------------------------------------------

import importlib.util  # noqa: E402
import threading  # noqa: E402
import types  # noqa: E402

import gradio as gr  # noqa: E402

import extension  # noqa: E402
from ui.settings import FIELDS, RENAMED  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def test_params_name_the_tab_and_every_saved_setting():
    assert extension.params["display_name"] == "Steering"
    assert extension.params["is_tab"] is True
    operator = {"allowed_task_folders", "job_confirm_minutes", "job_limit_minutes"}
    assert set(extension.params) == {"display_name", "is_tab", *operator, *FIELDS, *RENAMED}
    # The webui saves a parameter unless it equals its own setting of that name.
    from modules_names import WEBUI_SETTING_NAMES

    assert not (set(FIELDS) | set(RENAMED) | operator) & WEBUI_SETTING_NAMES


def test_the_operator_sets_the_job_limits(monkeypatch, caplog):
    """A shared app's operator caps how long any visitor's job may hold the
    model: the webui's settings, or the standalone app's flags."""
    monkeypatch.setitem(extension.params, "job_confirm_minutes", 5)
    monkeypatch.setitem(extension.params, "job_limit_minutes", 30)
    limits = extension._webui_job_limits()
    assert (limits.confirm_seconds, limits.refuse_seconds) == (300.0, 1800.0)
    monkeypatch.setitem(extension.params, "job_limit_minutes", "lots")  # hand-edited
    limits = extension._webui_job_limits()
    assert limits.refuse_seconds is None and "ignoring job_limit_minutes='lots'" in caplog.text
    args = extension._parser().parse_args(["--confirm-jobs-over", "2", "--refuse-jobs-over", "60"])
    assert (args.confirm_jobs_over, args.refuse_jobs_over) == (2.0, 60.0)
    for bad in ("0", "-1", "inf", "soon"):
        with pytest.raises(SystemExit):
            extension._parser().parse_args(["--refuse-jobs-over", bad])


def test_ui_outside_the_webui_builds_and_says_there_is_no_model():
    assert importlib.util.find_spec("modules") is None  # really outside
    with gr.Blocks() as page:
        extension.ui()
    texts = [str(c["props"].get("value")) for c in page.config["components"]]
    assert any("No model is loaded" in t for t in texts)


def test_setup_outside_the_webui_does_nothing(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "modules", None)  # not importable
    caplog.set_level("INFO")
    extension.setup()
    assert "not running inside text-generation-webui" in caplog.text


def test_the_lock_is_the_webuis_generation_lock_looked_up_at_each_use():
    shared = types.SimpleNamespace(generation_lock=None)
    lock = extension.WebuiLock(shared)
    with lock:  # before server.py made its lock: one of ours stands in
        assert lock.locked()
    webui_lock = threading.Lock()
    shared.generation_lock = webui_lock
    assert lock.acquire(blocking=False)
    assert webui_lock.locked()
    shared.generation_lock = threading.Lock()  # replaced while held
    lock.release()  # releases the one it took
    assert not webui_lock.locked()
    webui_lock.acquire()
    shared.generation_lock = webui_lock
    assert not lock.acquire(blocking=False)  # the webui is generating
    webui_lock.release()
    with pytest.raises(RuntimeError):
        lock.release()


def test_script_loaded_by_file_path_is_the_extension():
    spec = importlib.util.spec_from_file_location("user_ext_steerswarm", ROOT / "script.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.params is extension.params
    assert module.ui is extension.ui and module.setup is extension.setup
    assert module.custom_css is extension.custom_css


def test_the_webui_gets_the_css_that_lines_up_form_rows():
    """The webui adds every extension's custom_css() to its page; ours marks
    the Optimize form's rows so their inputs line up at the bottom."""
    from ui.optimize_form import FORM_ROW

    css = extension.custom_css()
    assert f".{FORM_ROW} > .form" in css and "align-items: stretch" in css
    assert "margin-top: auto" in css  # each field's label and input at the bottom


def test_script_loads_its_own_extension_beside_another_extensions(monkeypatch):
    """Another extension's folder may have put its own `extension` module in
    sys.modules first; ours is then loaded from its path under its own name."""
    foreign = types.ModuleType("extension")
    foreign.__file__ = "/elsewhere/extension.py"
    monkeypatch.setitem(sys.modules, "extension", foreign)
    monkeypatch.delitem(sys.modules, "steerswarm_extension", raising=False)
    spec = importlib.util.spec_from_file_location("user_ext_other", ROOT / "script.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    ours = sys.modules["steerswarm_extension"]
    assert module.params is ours.params and module.params["display_name"] == "Steering"
    assert Path(ours.__file__).resolve() == ROOT / "extension.py"
    del sys.modules["steerswarm_extension"]
