"""Every write failure is a clear one-line error and
loses nothing. The output path of `python -m steering capture` is checked
before the model loads; `python -m optimize` writes its result where it can
and says where; SIGTERM stops a run like Ctrl-C and saves the partial result.

Tests run as root in CI, where chmod does not stop a write: a read-only or
full filesystem is simulated by a patched call raising OSError(EROFS/ENOSPC),
or by a path under a regular file."""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

import steering.__main__ as steering_cli
from steering import capture_vector, save_vectors, steerer_for
from steering.errors import InvalidInputError
from steering.outputs import check_output_path, write_with_fallback

ROOT = Path(__file__).resolve().parents[2]


def _env(tmp_path):
    return {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": str(ROOT),
        "XDG_DATA_HOME": str(tmp_path / "xdg"),
    }


@pytest.fixture
def joy(tmp_path):
    path = tmp_path / "joy.txt"
    path.write_text("I am so happy today!\nWhat a wonderful day.\n")
    return path


def _capture(*args):
    return ["capture", "--prompts", *args[:1], "--layer", "1", "--alpha", "2", "--out", *args[1:]]


def _no_model(*args, **kwargs):
    raise AssertionError("the model was loaded before the output path was checked")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda t: (t / "a-folder").mkdir() or t / "a-folder", "--out names a folder, not a file"),
        (lambda t: (t / "plain.txt").write_text("x") and t / "plain.txt" / "v.safetensors",
         "plain.txt is a file, not a folder"),
        (lambda t: t / "missing" / "v.safetensors", "The folder of --out does not exist"),
    ],
)
def test_capture_checks_its_output_before_loading_the_model(
    tmp_path, joy, monkeypatch, capsys, make, message
):
    out = make(tmp_path)
    monkeypatch.setattr(steering_cli, "load_model", _no_model)
    assert steering_cli.main(_capture(str(joy), str(out))) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize("code", [errno.EROFS, errno.EACCES])
def test_capture_into_a_read_only_folder_is_refused_first(tmp_path, joy, monkeypatch, capsys, code):
    def refuse(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(steering_cli, "load_model", _no_model)
    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    assert steering_cli.main(_capture(str(joy), str(tmp_path / "v.safetensors"))) == 2
    err = capsys.readouterr().err
    assert f"Cannot write into the folder of --out ({tmp_path}): {os.strerror(code)}." in err
    assert err.count("\n") == 1


def test_capture_on_a_full_disk_keeps_the_old_file(tmp_path, joy, tiny_dir, monkeypatch, capsys):
    out = tmp_path / "v.safetensors"
    out.write_bytes(b"the old file")

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("steering.outputs.os.fsync", full)
    assert steering_cli.main([*_capture(str(joy), str(out)), "--model", str(tiny_dir)]) == 2
    err = capsys.readouterr().err
    assert (
        f"Could not write {out}: No space left on device. Any earlier file there is unchanged."
        in err
    )
    # one line (after the model loader's own progress bar), no traceback
    assert err.count("error:") == 1 and err.endswith("unchanged.\n") and "Traceback" not in err
    assert out.read_bytes() == b"the old file"
    assert [
        p.name for p in tmp_path.iterdir() if p.name.startswith(".v.")
    ] == []  # no temp file left


@pytest.mark.full  # a real `python -m steering` process
def test_capture_cli_subprocess_gives_one_line_for_a_folder(tmp_path, joy):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "steering",
            *_capture(str(joy), str(tmp_path)),
            "--model",
            "/nonexistent",
        ],
        capture_output=True,
        text=True,
        env=_env(tmp_path),
        cwd=ROOT,
        timeout=300,
        check=False,
    )
    assert (
        done.returncode == 2
        and done.stderr == f"error: --out names a folder, not a file: {tmp_path}\n"
    )


def test_write_with_fallback_says_where(tmp_path, monkeypatch):
    def write(path: Path) -> Path:
        if path.parent.name == "asked":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        path.write_text("result")
        return path

    saved, note = write_with_fallback(write, tmp_path / "asked" / "r.json", tmp_path / "data")
    assert saved.parent == tmp_path / "data" and saved.read_text() == "result"
    asked = tmp_path / "asked" / "r.json"
    assert note == f"Could not write {asked} (No space left on device); saved to {saved} instead."

    def nowhere(path: Path) -> Path:
        if path.parent == Path(tempfile.gettempdir()):
            path.write_text("result")
            return path
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    saved, note = write_with_fallback(nowhere, tmp_path / "asked" / "r.json", tmp_path / "data")
    try:
        assert saved.parent == Path(tempfile.gettempdir()) and "Read-only file system" in note
    finally:
        saved.unlink()
    assert write_with_fallback(write, tmp_path / "r.json", tmp_path / "data") == (
        tmp_path / "r.json",
        "",
    )


def test_check_output_path_accepts_a_writable_file(tmp_path):
    assert check_output_path(tmp_path / "x.json", "--out") == tmp_path / "x.json"
    assert list(tmp_path.iterdir()) == []  # the probe is gone
    with pytest.raises(InvalidInputError):
        check_output_path(tmp_path, "--out")


def _optimize_args(tmp_path, tiny, extra=()):
    steerer = steerer_for(tiny.model, tiny.tokenizer, tiny.name)
    steerer.reset()
    vector = capture_vector(
        steerer, ["I love this day", "so happy"], 1, 2.0, ["I hate this day", "so sad"]
    )
    vectors = save_vectors(tmp_path / "v.safetensors", [vector], steerer.info)
    model_dir = tmp_path / "tiny-model"
    tiny.model.save_pretrained(model_dir)
    tiny.tokenizer.save_pretrained(model_dir)
    return [
        "--model", str(model_dir), "--vectors", str(vectors), "--include-path", str(ROOT / "tasks"),
        "--task", "steer_sentiment", "--limit", "4", "--batch-size", "4", "--particles", "2",
        "--layer-min", "0", "--layer-max", "3", *extra,
    ]


@pytest.mark.full  # a real process per signal
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_optimize_cli_and_saves_the_partial_result(tmp_path, tiny, sig):
    out = tmp_path / "result.json"
    args = _optimize_args(tmp_path, tiny, ("--iterations", "200", "--out", str(out)))
    proc = subprocess.Popen(
        [sys.executable, "-m", "optimize", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=_env(tmp_path), cwd=tmp_path,
    )
    err: list[str] = []
    started = threading.Event()

    def read() -> None:
        while chunk := proc.stderr.read(1):
            err.append(chunk)
            if re.search(r" ([2-9]|\d{2,})/\d+ ", "".join(err[-200:])):
                started.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert started.wait(280), "".join(err)
        proc.send_signal(sig)
        stdout = proc.stdout.read()
        assert proc.wait(120) == 128 + sig, "".join(err)  # not 0: the run did not finish
    finally:
        if proc.poll() is None:
            proc.kill()
    reader.join(10)
    data = json.loads(out.read_text())
    assert data["cancelled"] is True and 2 <= len(data["history"]) < 1 + 2 * 200
    assert "cancelled" in stdout and f"saved {out}" in stdout
    assert "stopping after the current evaluation" in "".join(err)


def test_optimize_cli_rescues_a_result_it_cannot_write(tmp_path, tiny, monkeypatch, capsys):
    """--out's disk fills up during the run: the result goes to the data folder."""
    from optimize import cli
    from optimize.run.results import OptimizationResult

    out = tmp_path / "asked" / "result.json"
    out.parent.mkdir()
    real_save = OptimizationResult.save

    def save(self, path):
        if Path(path).parent == out.parent:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(self, path)

    monkeypatch.setattr(OptimizationResult, "save", save)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    args = _optimize_args(tmp_path, tiny, ("--iterations", "1", "--out", str(out), "--quiet"))
    assert cli.main(args) == 1
    captured = capsys.readouterr()
    [rescued] = (tmp_path / "xdg" / "steerswarm" / "results").iterdir()
    assert json.loads(rescued.read_text())["format"] == "steerswarm.optimization"
    assert captured.err.strip().splitlines()[-1] == (
        f"python -m optimize: error: Could not write {out} (No space left on device); "
        f"saved to {rescued} instead."
    )
    assert f"saved {rescued}" in captured.out and not out.exists()


# `python -m steering` with a forward pre-hook on layer 0 that says so and then
# sleeps: the signal arrives while the model is running the capture's batches
# (a tiny model would otherwise finish before any signal could be sent).
MID_CAPTURE = """
import sys, time
import steering.__main__ as cli
real = cli.load_model
def load(*args):
    loaded = real(*args)
    def pause(module, inputs):
        print("mid-capture", file=sys.stderr, flush=True)
        time.sleep(300)
    loaded.model.model.layers[0].register_forward_pre_hook(pause)
    return loaded
cli.load_model = load
sys.exit(cli.main(sys.argv[1:]))
"""


def _ignore_sigint() -> None:
    """In the child before it runs: SIGINT ignored, as a shell starts a background job."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.full  # a real process per signal
@pytest.mark.parametrize(
    ("sig", "line"),
    [(signal.SIGINT, "error: interrupted (Ctrl-C); nothing was written."),
     (signal.SIGTERM, "error: stopped by SIGTERM; nothing was written.")],
)
def test_a_signal_mid_capture_stops_it_with_one_line_and_no_file(tmp_path, tiny_dir, sig, line):
    prompts = tmp_path / "many.txt"
    prompts.write_text("\n".join(f"I am happy, day {i}." for i in range(256)))
    out = tmp_path / "out" / "v.safetensors"
    out.parent.mkdir()
    # Started with SIGINT ignored, as a background job of a script (`cmd &`)
    # is: the command must still stop on it (and CI may run the tests so).
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            MID_CAPTURE,
            *_capture(str(prompts), str(out)),
            "--model",
            str(tiny_dir),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(tmp_path),
        cwd=tmp_path,
        preexec_fn=_ignore_sigint,  # noqa: PLW1509 - it only calls signal(), which takes no lock
    )
    try:
        err = []
        for text in proc.stderr:  # the loader's lines, then the hook's
            err.append(text)
            if text.strip() == "mid-capture":
                break
        assert err and err[-1].strip() == "mid-capture", "".join(err)
        proc.send_signal(sig)
        stdout, rest = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + sig, rest
    assert rest == line + "\n", rest  # one line: no traceback
    assert stdout == "" and list(out.parent.iterdir()) == []  # no file, no temporary file
