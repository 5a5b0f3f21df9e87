"""Task sources: a page may only use the task folders the operator allowed.

The exploit this prevents: a visitor uploads a task YAML and its Python through
"Load vectors" (Gradio keeps uploads in its upload folder), points the Task
folder at that folder, and lm-eval imports the Python. Here the Python writes
a sentinel file when imported; the folder must be refused and the sentinel
must never appear.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from optimize.scoring.task_sources import (
    REGISTERED,
    SHIPPED_TASKS,
    AllowedTaskSources,
    TaskSourceError,
    upload_folder,
)
from steering.errors import InvalidInputError
from ui.optimize_tab import OptimizeActions, parse_request
from ui.steering_tab import SteeringActions

SENTINEL_LINE = 'import pathlib; pathlib.Path({sentinel!r}).write_text("imported")\n'


def plant_task(folder: Path, sentinel: Path) -> Path:
    """A working copy of steer_sentiment whose utils.py writes `sentinel` on import."""
    task = folder / "evil_task"
    task.mkdir(parents=True)
    yaml = (SHIPPED_TASKS / "steer_sentiment.yaml").read_text()
    yaml = yaml.replace("task: steer_sentiment", "task: evil_task")
    (task / "evil.yaml").write_text(yaml.replace("steer_sentiment/data.jsonl", "data.jsonl"))
    shutil.copy(SHIPPED_TASKS / "steer_sentiment" / "data.jsonl", task / "data.jsonl")
    loader = (SHIPPED_TASKS / "utils.py").read_text()
    (task / "utils.py").write_text(SENTINEL_LINE.format(sentinel=str(sentinel)) + loader)
    return task


@pytest.fixture
def uploads(tmp_path, monkeypatch):
    folder = tmp_path / "gradio-uploads"
    folder.mkdir()
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(folder))
    assert upload_folder() == folder.resolve()
    return folder


@pytest.fixture
def session(tiny_session):
    return tiny_session


def form(task: str, folder: str, choices: list[str]) -> list[object]:
    """The Optimize form's values (the table's defaults for the fields not named)."""
    from optimize.config.table import BY_NAME
    from ui.optimize_form import NAMES

    values = {name: BY_NAME[name].default for name in NAMES}
    values.update(task=task, task_folder=folder, limit=6, batch_size=2, particles=1,
                  iterations=1, layer_min=0, layer_max=3, unit="alpha", alpha_min=-1.0,
                  alpha_max=1.0, heldout_task="", guard_task="")
    return [choices, *(values[name] for name in NAMES)]


def test_a_task_uploaded_by_a_visitor_is_refused_and_never_imported(
    uploads, tmp_path, session
):
    sentinel = tmp_path / "sentinel"
    planted = plant_task(uploads / "0123abcd", sentinel)
    steering = SteeringActions(session, tmp_path / "saved")
    *_, _view = steering.add_vector("good", "bad", 1, 1.0)  # run to its end
    sources = AllowedTaskSources.default(tmp_path / "data")
    actions = OptimizeActions(session, steering.save_dir, sources)
    choices = actions.vector_choices(None)["value"]
    for folder in (planted, planted.parent, uploads, f"{uploads}/../gradio-uploads/0123abcd"):
        shown = list(actions.optimize(*form("evil_task", str(folder), choices)))
        status = shown[-1][-1]
        assert status.startswith("⚠ Could not start the optimization"), status
        assert "upload folder" in status
        with pytest.raises(TaskSourceError, match="upload folder"):
            parse_request(*form("evil_task", str(folder), choices), sources=actions.sources)
    assert not sentinel.exists()
    assert not session.lock.locked()


def test_the_same_task_in_an_allowed_folder_runs_its_python(tmp_path, session):
    """The control: the sentinel does show that lm-eval imports a task's Python."""
    sentinel = tmp_path / "sentinel"
    data = tmp_path / "data"
    plant_task(data / "tasks", sentinel)
    steering = SteeringActions(session, tmp_path / "saved")
    list(steering.add_vector("good", "bad", 1, 1.0))
    actions = OptimizeActions(session, steering.save_dir, AllowedTaskSources.default(data))
    choices = actions.vector_choices(None)["value"]
    shown = list(actions.optimize(*form("evil_task", str(data / "tasks"), choices)))
    assert shown[-1][-1].startswith("✓ Done."), shown[-1][-1]
    assert sentinel.read_text() == "imported"


@pytest.mark.parametrize("folder", ["/", "/..", "//", "/tmp/../"])
def test_the_filesystem_root_is_refused(folder):
    with pytest.raises(TaskSourceError, match="filesystem root"):
        AllowedTaskSources().include_path(folder)
    with pytest.raises(TaskSourceError, match="filesystem root"):
        AllowedTaskSources((Path(folder),))


def test_dot_dot_and_symlinks_out_of_an_allowed_folder_are_refused(tmp_path):
    allowed = tmp_path / "allowed"
    outside = tmp_path / "outside"
    (allowed / "sub").mkdir(parents=True)
    outside.mkdir()
    (allowed / "link").symlink_to(outside, target_is_directory=True)
    sources = AllowedTaskSources((allowed,))
    for sneaky in (allowed / ".." / "outside", allowed / "sub" / ".." / ".." / "outside",
                   allowed / "link"):
        with pytest.raises(TaskSourceError, match="not one the operator allowed"):
            sources.include_path(str(sneaky))
    assert sources.include_path(str(allowed / "sub" / "..")) == str(allowed.resolve())
    assert sources.include_path(str(allowed / "sub")) == str((allowed / "sub").resolve())


def test_a_symlink_into_the_upload_folder_is_refused(tmp_path, uploads):
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "uploads").symlink_to(uploads, target_is_directory=True)
    with pytest.raises(TaskSourceError, match="upload folder"):
        AllowedTaskSources((allowed,)).include_path(str(allowed / "uploads"))


def test_the_operator_cannot_allow_the_upload_or_temporary_folder(tmp_path, uploads):
    import tempfile

    for folder in (uploads, uploads / "x", uploads.parent.parent, Path(tempfile.gettempdir())):
        with pytest.raises(TaskSourceError, match="cannot be an allowed task folder"):
            AllowedTaskSources((folder,))


def test_allowed_sources_work_and_are_offered(tmp_path):
    data = tmp_path / "data"
    extra = tmp_path / "extra"
    extra.mkdir()
    sources = AllowedTaskSources.default(data, [str(extra)])
    assert sources.folders == (SHIPPED_TASKS.resolve(), (data / "tasks").resolve(), extra.resolve())
    # the user task folder does not exist yet: allowed, but not offered
    values = [value for _label, value in sources.choices()]
    assert values == [str(SHIPPED_TASKS.resolve()), str(extra.resolve()), REGISTERED]
    assert sources.first() == str(SHIPPED_TASKS.resolve())
    assert sources.include_path(str(SHIPPED_TASKS)) == str(SHIPPED_TASKS.resolve())
    assert sources.include_path(str(extra)) == str(extra.resolve())
    assert sources.include_path("") is None and sources.include_path(None) is None
    with pytest.raises(TaskSourceError, match="Task folder not found"):
        sources.include_path(str(data / "tasks"))
    (data / "tasks").mkdir(parents=True)
    assert sources.include_path(str(data / "tasks")) == str((data / "tasks").resolve())


def test_registered_tasks_can_be_switched_off():
    sources = AllowedTaskSources(registered=False)
    assert [v for _l, v in sources.choices()] == [str(SHIPPED_TASKS.resolve())]
    with pytest.raises(TaskSourceError, match="Choose a task folder"):
        sources.include_path("  ")


@pytest.mark.parametrize("folder", ["\x00", "a\x00b", " "])
def test_malformed_folders_are_typed_errors(folder):
    with pytest.raises(InvalidInputError):
        AllowedTaskSources((Path("/x"), folder))  # type: ignore[arg-type]


def test_the_standalone_app_refuses_a_forbidden_folder_before_loading_a_model(caplog):
    import extension

    assert extension.main(["--allow-task-folder", "/", "--model", "/no/such/model"]) == 2
    assert "filesystem root" in caplog.text


def test_the_webui_setting_adds_folders_and_leaves_out_forbidden_ones(
    tmp_path, monkeypatch, uploads, caplog
):
    import extension

    extra = tmp_path / "extra"
    extra.mkdir()
    monkeypatch.chdir(tmp_path)
    (tmp_path / "user_data").mkdir()
    monkeypatch.setitem(extension.params, "allowed_task_folders", [str(extra), str(uploads), "/"])
    sources = extension._webui_task_sources()
    assert sources.folders == (
        SHIPPED_TASKS.resolve(),
        (tmp_path / "user_data" / "steerswarm" / "tasks").resolve(),
        extra.resolve(),
    )
    assert "upload folder" in caplog.text and "filesystem root" in caplog.text
    monkeypatch.setitem(extension.params, "allowed_task_folders", 7)
    assert extension._webui_task_sources().folders[-1] == (
        tmp_path / "user_data" / "steerswarm" / "tasks"
    ).resolve()
