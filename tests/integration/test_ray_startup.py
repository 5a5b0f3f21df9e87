"""Ray workers start with a deadline, with the real Ray, on the tiny Llama:
more workers than the cluster's CPUs (or GPUs) are refused before any
starts (3 workers on 2 CPUs waited for ever in "Starting…", holding the
model), a start-up that takes too long ends with a message, Cancel stops a
start-up, and the app leaves no Ray process behind on SIGTERM (its
DashboardAgent and RuntimeEnvAgent outlived it)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil  # accelerate (hence lm-eval) depends on it
import pytest

from optimize.run.assembly import RunRecipe
from optimize.run.settings import RunSettings
from optimize.workers.ray import RayOptions, RayWorkers, WorkerError
from steering import capture_vector, save_vectors, steerer_for
from steering.errors import JobCancelled

try:
    import ray
except ImportError:  # optional for users; scripts/install.sh --test installs it
    ray = None

# Starting a local Ray (and, below, the app with it) costs tens of seconds:
# the full tier runs these.
pytestmark = pytest.mark.full

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def ray_installed(require):
    require(ray is not None, "Ray is not installed: pip install -r requirements/ray.txt")


@pytest.fixture(scope="module")
def local_ray(ray_installed):
    """One local Ray of 2 CPUs for the module (RayWorkers joins it, leaves it up)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def recipe(tokenizer, tmp_path_factory):
    """The tiny Llama saved as a model folder, with one joy vector at layer 1."""
    from tests.support.models import tiny_llama

    folder = tmp_path_factory.mktemp("ray-startup")
    model = tiny_llama(tokenizer, 0)
    model.save_pretrained(folder / "model")
    tokenizer.save_pretrained(folder / "model")
    steerer = steerer_for(model, tokenizer, "model")
    joy = capture_vector(steerer, ["I love this day", "so happy"], 1, 2.0, ["I hate it", "so sad"])
    path = save_vectors(folder / "joy.safetensors", [joy], steerer.info)
    steerer.reset()
    settings = RunSettings.from_values(
        {"task": "steer_sentiment", "task_folder": str(ROOT / "tasks"), "limit": 4}
    )
    return RunRecipe.of_file(path, settings, model=str(folder / "model"), device="cpu")


def _cpus_free_again() -> bool:
    """Whether every CPU of the local Ray is free (no actor left holding one)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if ray.available_resources().get("CPU", 0) >= 2:
            return True
        time.sleep(0.5)
    return False


def test_more_workers_than_the_cluster_holds_are_refused_before_any_starts(recipe, local_ray):
    workers = RayWorkers(recipe, [0], RayOptions(workers=3))
    with pytest.raises(WorkerError) as refused:
        workers.start()
    assert str(refused.value) == (
        "3 Ray workers need 3 CPUs (1 each), and the Ray cluster at this machine has 2: set "
        "Ray workers to at most 2."
    )
    with pytest.raises(WorkerError, match="Each Ray worker needs 1 GPU, and the Ray cluster"):
        RayWorkers(recipe, [0], RayOptions(workers=1, num_gpus=1.0)).start()
    assert workers.actors == [] and ray.is_initialized()  # a Ray it joined stays up
    assert _cpus_free_again()


def test_a_start_up_past_its_deadline_ends_with_a_message(recipe, local_ray):
    workers = RayWorkers(recipe, [0], RayOptions(workers=1, start_timeout=0.5))
    with pytest.raises(WorkerError, match=r"did not start within 0.5 s: 0 of 1 loaded the model"):
        workers.start()  # an actor needs seconds to import torch and load the model
    assert workers.actors == [] and _cpus_free_again()


def test_cancel_stops_a_start_up(recipe, local_ray):
    cancel = threading.Event()
    timer = threading.Timer(0.5, cancel.set)
    timer.start()
    workers = RayWorkers(recipe, [0], RayOptions(workers=2))
    with pytest.raises(JobCancelled, match=r"The Ray workers' start was cancelled \(0 of 2 had"):
        workers.start(cancel)
    timer.join()
    assert workers.actors == [] and _cpus_free_again()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ray_processes(pid: int) -> list[psutil.Process]:
    """The Ray processes below the process `pid` (raylet, gcs_server, agents, workers)."""
    found = []
    for child in psutil.Process(pid).children(recursive=True):
        try:
            text = " ".join(child.cmdline()) + " " + child.name()
        except psutil.Error:
            continue
        if "ray" in text.lower():
            found.append(child)
    return found


def test_the_app_leaves_no_ray_process_behind_on_sigterm(ray_installed, tiny_dir, tmp_path):
    """The standalone app, a run on one Ray worker started through its API,
    then SIGTERM: the app ends, and so does every Ray process it started."""
    from gradio_client import Client

    from steering.models import load_model
    from steering.persist import DataFolder
    from tests.support.forms import form_fields

    data = DataFolder(tmp_path / "data")
    loaded = load_model(str(tiny_dir))
    steerer = steerer_for(loaded.model, loaded.tokenizer, loaded.name)
    joy = capture_vector(steerer, ["I love this day", "so happy"], 1, 2.0, ["I hate it", "so sad"])
    steerer.add(joy)
    assert data.keep(steerer) == ""  # the app restores it at start
    steerer.reset()
    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    log = tmp_path / "app.log"
    app = subprocess.Popen(
        [sys.executable, str(ROOT / "extension.py"), "--model", str(tiny_dir), "--port", str(port),
         "--data-dir", str(data.root)],
        stdout=subprocess.DEVNULL, stderr=log.open("w"), env=env, cwd=tmp_path,
    )
    started: list[psutil.Process] = []
    try:
        client = _client(Client, port, app, log)
        fields = form_fields(iterations=50, workers=1)
        client.submit([joy.id], *fields, api_name="/optimize")
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and app.poll() is None:
            started = _ray_processes(app.pid)
            if any("ray::" in p.name() or "Worker" in " ".join(p.cmdline()) for p in started):
                break
            time.sleep(1)
        assert started, "no Ray process started"
        started = _ray_processes(app.pid)  # every one, the worker's included
        app.send_signal(signal.SIGTERM)
        assert app.wait(120) == 0, log.read_text()[-3000:]
        _, alive = psutil.wait_procs(started, timeout=60)
        assert alive == [], [(p.pid, p.name()) for p in alive]
    finally:  # a failing run leaves nothing behind either: what this app started is ended
        leftover = [p for p in started if p.is_running()]
        if app.poll() is None:
            leftover += _ray_processes(app.pid)
            app.kill()
        for process in leftover:
            with contextlib.suppress(psutil.Error):  # it may have exited meanwhile
                process.kill()


def _client(client_class, port: int, app: subprocess.Popen, log: Path) -> object:
    """A gradio client of the app once it serves (it loads the model first)."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if app.poll() is not None:
            raise AssertionError(f"the app exited: {log.read_text()[-3000:]}")
        try:
            return client_class(f"http://127.0.0.1:{port}/", verbose=False)
        except Exception:  # noqa: BLE001 - not serving yet
            time.sleep(1)
    raise AssertionError("the app never served")
