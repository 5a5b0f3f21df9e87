"""Ray workers on the tiny Llama: a local Ray of 2 CPU actors gives
the same history as a run without Ray for a seed, and an actor killed while
the run goes on has its setting scored again on a new actor, with a
complete history that scores nothing twice."""

from __future__ import annotations

import pytest
import torch

from optimize import PsoConfig, SearchSpace, run_optimization
from optimize.config.space import Setting
from optimize.run.assembly import RunRecipe, search_fitness
from optimize.run.optimization import RunPlan
from optimize.run.settings import RunSettings
from optimize.scoring.metrics import Metrics
from optimize.workers.ray import RayOptions, RayWorkers, Worker, WorkerError
from steering import capture_vector, save_vectors, steerer_for
from tests.support.models import tiny_llama

try:
    import ray
except ImportError:  # optional for users; scripts/install.sh --test installs it
    ray = None

SPACE = SearchSpace(layer_min=1, layer_max=3, alpha_min=-30.0, alpha_max=30.0, alpha_decimals=0)
PSO = PsoConfig(particles=3, iterations=2, seed=7)


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
def driver_threads():
    """The driver on 2 torch threads, whatever this machine's default: Ray
    starts each actor with OMP_NUM_THREADS=1, and a KL summed on 1 thread
    differs from one summed on 2 in its last bits, so the history test only
    shows the actors take the driver's thread count when the two differ."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield 2
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def recipe(tokenizer, sentiment_task, tmp_path_factory):
    """The tiny Llama saved as a model folder, with one joy vector at layer 1."""
    folder = tmp_path_factory.mktemp("ray-tiny")
    model = tiny_llama(tokenizer, 0)
    model.save_pretrained(folder / "model")
    tokenizer.save_pretrained(folder / "model")
    steerer = steerer_for(model, tokenizer, "model")
    joy = capture_vector(steerer, ["I love this day", "so happy"], 1, 2.0, ["I hate it", "so sad"])
    path = save_vectors(folder / "joy.safetensors", [joy], steerer.info)
    steerer.reset()
    settings = RunSettings.from_values(
        {"task": "tiny_sentiment", "task_folder": sentiment_task, "limit": 6}
    )
    return RunRecipe.of_file(path, settings, model=str(folder / "model"), device="cpu")


def _run(recipe, workers=None, on_progress=None):
    loaded, steerer, vectors = recipe.load()
    steerer.set_vectors(vectors)
    fitness = search_fitness(steerer, RunSettings.from_values(recipe.settings), [])
    try:
        plan = RunPlan(fitness, SPACE, PSO, objective="guarded")
        return run_optimization(steerer, [0], plan, workers=workers, on_progress=on_progress)
    finally:
        steerer.reset()
        del loaded


def _history(result):
    """Each evaluation, its metrics with NaN (a KL not measured) as None: comparable."""
    return [
        (e.iteration, e.particle, e.setting,
         {k: None if v != v else v for k, v in e.metrics.items()}, e.cached)
        for e in result.history
    ]


@pytest.fixture(scope="module")
def alone(recipe, driver_threads):
    """The run without Ray: the history every Ray run must repeat."""
    return _run(recipe)


@pytest.fixture(scope="module")
def workers(local_ray, recipe, driver_threads):
    """Two CPU actors, each with its own model, shared by the module's tests."""
    with RayWorkers(recipe, [0], RayOptions(workers=2)) as pool:
        yield pool


# Starting a local Ray and its actors costs tens of seconds: the full tier runs these two.
@pytest.mark.full
def test_two_ray_workers_give_the_history_of_a_run_without_ray(workers, recipe, alone):
    assert len(set(workers.pids())) == 2  # two processes, each with its own model
    # every distinct setting scores its own KL, so a setting given another's
    # metrics (a dispatch mix-up) could not leave the history unchanged
    measured = {
        e.setting.key: e.metrics["kl"]
        for e in alone.evaluations
        if e.metrics["kl"] == e.metrics["kl"]
    }  # settings at or below the baseline get no KL pass (NaN)
    assert len(set(measured.values())) == len(measured) >= 2
    spread = _run(recipe, workers)
    assert _history(spread) == _history(alone)
    assert spread.best.setting == alone.best.setting and workers.replaced == 0


@pytest.mark.full
def test_a_killed_worker_has_its_setting_scored_again_and_nothing_twice(workers, recipe, alone):
    victim = workers.actors[1]

    def kill_after_the_first(progress):
        if progress.done == 2:  # the first setting is back; the second actor holds one
            ray.kill(victim)

    spread = _run(recipe, workers, kill_after_the_first)
    assert victim not in workers.actors and len(set(workers.pids())) == 2
    assert workers.replaced == 1
    assert _history(spread) == _history(alone)
    paid = [e.setting.key for e in spread.evaluations if not e.cached]
    assert len(paid) == len(set(paid)) == len({e.setting.key for e in spread.evaluations})


def test_a_worker_that_cannot_load_the_model_says_why(ray_installed, recipe, tmp_path):
    import dataclasses

    missing = dataclasses.replace(recipe, model=str(tmp_path / "no-model"))
    assert "Could not load model" in Worker(missing, [0]).ready()[1]  # the actor's body
    with pytest.raises(WorkerError, match="whole number from 1"):
        RayOptions(workers=0)


class _Ref:
    """A fake Ray object ref: what a fake actor's call returns."""

    def __init__(self, value):
        self.value = value


class _Actor:
    """A fake actor whose `score.remote(setting)` gives metrics unique to the setting."""

    class _Method:
        @staticmethod
        def remote(setting):
            return _Ref(Metrics(kl=setting.layers[0] * 100 + setting.alphas[0]))

    score = _Method()


class _LastFirst:
    """Ray's `wait` and `get` as `RayWorkers` calls them, handing back the
    most recently dispatched call first: what happens on real workers when an
    iteration's first setting is the slowest to score."""

    exceptions = getattr(ray, "exceptions", None)  # the test asks for Ray first

    @staticmethod
    def wait(refs, num_returns):
        return refs[-num_returns:], refs[:-num_returns]

    @staticmethod
    def get(ref):
        return ref.value


def test_metrics_come_back_in_dispatch_order_when_actors_finish_out_of_order(ray_installed, recipe):
    """Each setting gets its own metrics, whatever order the actors finish in
    (a results-to-particles mix-up would pass the history test whenever every
    setting happened to score alike)."""
    pool = RayWorkers(recipe, [0], RayOptions(workers=3))
    pool._ray, pool.actors = _LastFirst(), [_Actor(), _Actor(), _Actor()]
    settings = [
        Setting((layer,), (float(alpha),))
        for layer, alpha in ((1, 5), (3, -2), (2, 0), (1, 7), (3, 3))
    ]
    got = list(pool(settings))
    assert [m["kl"] for m in got] == [105.0, 298.0, 200.0, 107.0, 303.0]
