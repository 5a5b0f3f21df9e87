"""Scoring a swarm's settings on Ray workers.

The swarm stays in the driver (`optimize.search.loop.run_search`); each iteration
it hands its not-yet-scored settings, as one batch, to a `RayWorkers`: a pool
of Ray actors that each loaded the model and vectors once (a `RunRecipe`) and
score a setting exactly as the driver would (`optimize.scoring.placing.SettingScorer`
on `optimize.run.assembly.search_fitness`, calibrated with the driver's
baseline). The batch is spread over the actors as
they come free, and the metrics are given back in the batch's order, so the
search, and its history for a seed, are the same as without Ray.

An actor that dies mid-evaluation (its process killed, its node lost) is
replaced by a new one, and the setting it held is scored again on the next
free actor; a setting whose actor dies `MAX_TRIES` times ends the run with a
WorkerError. The driver's search records each setting once, so nothing is
scored twice in the result.

Ray is optional (requirements/ray.txt): this module imports without it, and
starting workers without it is a WorkerError saying how to install it.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optimize.config.space import Setting
from optimize.run.assembly import RunRecipe
from optimize.scoring.metrics import Metrics
from steering.errors import JobCancelled, SteerSwarmError
from steering.limits import RAY_START_SECONDS

MAX_TRIES = 3
ROOT = Path(__file__).resolve().parents[2]  # where `optimize` and `steering` import from


class WorkerError(SteerSwarmError):
    """Ray is missing, or the workers could not start or keep scoring."""


@dataclass(frozen=True)
class RayOptions:
    """Where and how many workers run.

    `address`: a running Ray cluster ("auto", "ray://host:10001", ...); None
    starts a local Ray on this machine. `workers`: how many actors, each with
    its own model replica. `num_gpus` / `num_cpus`: what Ray reserves for each
    actor (fractions share a GPU); None GPUs: one each when the cluster has
    GPUs, else none. `start_timeout`: seconds the actors may take to start
    and load the model before the start is given up with a message."""

    address: str | None = None
    workers: int = 2
    num_gpus: float | None = None
    num_cpus: float = 1.0
    start_timeout: float = RAY_START_SECONDS

    def __post_init__(self) -> None:
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 1:
            raise WorkerError(
                f"The number of Ray workers must be a whole number from 1, got {self.workers!r}."
            )
        for name in ("num_gpus", "num_cpus"):
            value = getattr(self, name)
            if value is None and name == "num_gpus":
                continue
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise WorkerError(f"{name} per Ray worker must be a number from 0, got {value!r}.")
        timeout = self.start_timeout
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise WorkerError(
                f"The Ray start-up timeout must be a number of seconds above 0, got {timeout!r}."
            )


class Worker:
    """The body of one Ray actor: loads the recipe's model once, then scores
    settings. A failure to load is kept and reported by `ready` (an error in
    an actor's constructor would only show as a dead actor)."""

    def __init__(
        self, recipe: RunRecipe, indices: Sequence[int], threads: int | None = None
    ) -> None:
        self.problem: str | None = None
        if threads is not None:
            # Ray gives an actor OMP_NUM_THREADS = its num_cpus (1); a CPU's
            # float sums depend on the thread count, so a KL would differ from
            # the driver's in its last bits and could flip a swarm comparison.
            import torch

            torch.set_num_threads(threads)
        try:
            from optimize.run.assembly import base_vectors, search_fitness
            from optimize.run.settings import RunSettings
            from optimize.scoring.placing import SettingScorer

            self.loaded, steerer, vectors = recipe.load()
            steerer.set_vectors(vectors)
            settings = RunSettings.from_values(recipe.settings)
            self.fitness = search_fitness(steerer, settings, base_vectors(steerer, indices))
            self.score_setting = SettingScorer(steerer, vectors, indices, self.fitness)
        except SteerSwarmError as exc:
            self.problem = str(exc)

    def calibrate(self, baseline: dict[str, float], values: list[float]) -> None:
        """The driver's baseline: settings it dominates get no KL pass here either."""
        self.fitness.calibrate(Metrics(baseline), values)

    def ready(self) -> tuple[int, str | None]:
        """This actor's process id, and why it cannot score (None: it can)."""
        return os.getpid(), self.problem

    def score(self, setting: Setting) -> Metrics:
        return self.score_setting(setting)

    def score_timed(self, setting: Setting) -> tuple[Metrics, float]:
        """The metrics and the seconds scoring took here (bench: a dispatch's overhead)."""
        started = time.perf_counter()
        metrics = self.score_setting(setting)
        return metrics, time.perf_counter() - started


def _ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise WorkerError(
            "Ray is not installed: pip install -r requirements/ray.txt (see docs/scale-out.md)."
        ) from exc
    return ray


class RayWorkers:
    """A pool of Ray actors scoring settings: a batch evaluator for
    `run_optimization(..., workers=...)`. Use it as a context manager (or call
    `start` and `close`): it connects to (or starts) Ray, starts the actors and
    waits until each has loaded the model; closing kills the actors and stops
    a Ray it started."""

    def __init__(self, recipe: RunRecipe, indices: Sequence[int], options: RayOptions) -> None:
        self.recipe = recipe
        self.indices = tuple(indices)
        self.options = options
        self.actors: list[Any] = []
        self.replaced = 0  # actors started again after one died
        self._ray: Any = None
        self._started_ray = False
        self._actor_class: Any = None
        self._threads: int | None = None
        self._calibration: tuple[dict[str, float], list[float]] | None = None

    def __enter__(self) -> RayWorkers:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self, cancel: threading.Event | None = None) -> None:
        """Connect to (or start) Ray, refuse more workers than the cluster can
        hold, then start the actors and wait until each has loaded the model:
        at most `options.start_timeout` seconds, and stopping at once when
        `cancel` is set (JobCancelled). Whatever fails, what was started is
        closed: no actor, and no Ray started here, is left behind."""
        ray = self._ray = _ray()
        try:
            self._connect(ray)
            gpus = self._check_resources(ray)
            self._actor_class = ray.remote(Worker).options(
                num_cpus=self.options.num_cpus, num_gpus=gpus
            )
            self.actors = [self._new_actor() for _ in range(self.options.workers)]
            self._wait_ready(cancel)
        except BaseException:
            self.close()
            raise

    def _connect(self, ray: Any) -> None:
        if not ray.is_initialized():
            path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
            env = {"PYTHONPATH": path, "TQDM_DISABLE": "1"}
            try:
                ray.init(
                    address=self.options.address,
                    include_dashboard=False,
                    log_to_driver=False,
                    runtime_env={"env_vars": env},
                    **({} if self.options.address else {"num_cpus": os.cpu_count() or 1}),
                )
            except (ConnectionError, RuntimeError, ValueError) as exc:
                where = self.options.address or "this machine"
                raise WorkerError(f"Could not start or reach Ray at {where}: {exc}") from exc
            self._started_ray = True
        if not self.options.address:
            # On this machine, actors compute with the driver's torch thread
            # count, so their scores equal the driver's bit for bit (a CPU's
            # float sums depend on it); on a cluster each keeps Ray's default.
            import torch

            self._threads = torch.get_num_threads()

    def _check_resources(self, ray: Any) -> float:
        """The GPUs each actor reserves, after refusing a pool the cluster
        cannot hold at once: Ray would start what fits and leave the rest
        waiting for ever (3 workers on 2 CPUs hung in "Starting…")."""
        resources = ray.cluster_resources()
        workers, options = self.options.workers, self.options
        gpus = options.num_gpus
        if gpus is None:
            gpus = 1.0 if resources.get("GPU", 0) >= 1 else 0.0
        for name, each in (("CPU", options.num_cpus), ("GPU", gpus)):
            have = float(resources.get(name, 0.0))
            if each > 0 and workers * each > have + 1e-9:
                fits = int(have // each + 1e-9)
                raise WorkerError(
                    f"{workers} Ray workers need {workers * each:g} {name}s ({each:g} each), and "
                    f"the Ray cluster at {options.address or 'this machine'} has {have:g}: set "
                    f"Ray workers to at most {fits}."
                    if fits
                    else f"Each Ray worker needs {each:g} {name}, and the Ray cluster at "
                    f"{options.address or 'this machine'} has {have:g}."
                )
        return gpus

    def _wait_ready(self, cancel: threading.Event | None) -> None:
        """Until every actor has loaded the model (WorkerError naming why one
        could not), the start-up timeout passes (WorkerError) or `cancel` is
        set (JobCancelled); checked at least every half second."""
        ray = self._ray
        waiting = {actor.ready.remote(): actor for actor in self.actors}
        deadline = time.monotonic() + self.options.start_timeout
        while waiting:
            if cancel is not None and cancel.is_set():
                raise JobCancelled(
                    f"The Ray workers' start was cancelled ({len(self.actors) - len(waiting)} of "
                    f"{len(self.actors)} had loaded the model); nothing was scored."
                )
            left = deadline - time.monotonic()
            if left <= 0:
                raise WorkerError(
                    f"The Ray workers did not start within {self.options.start_timeout:g} s: "
                    f"{len(self.actors) - len(waiting)} of {len(self.actors)} loaded the model. "
                    "Use fewer workers, or a cluster with room for them."
                )
            ready, _ = ray.wait(list(waiting), num_returns=1, timeout=min(0.5, left))
            for ref in ready:
                waiting.pop(ref)
                self._read_ready(ref)

    def _new_actor(self) -> Any:
        actor = self._actor_class.remote(self.recipe, self.indices, self._threads)
        if self._calibration is not None:
            actor.calibrate.remote(*self._calibration)  # runs before any score: actors are ordered
        return actor

    def calibrate(self, baseline: Metrics, values: Sequence[float]) -> None:
        """Give every actor (and any that replaces one) the driver's baseline."""
        self._calibration = (dict(baseline), [float(v) for v in values])
        if self._ray is not None:
            self._ray.get([actor.calibrate.remote(*self._calibration) for actor in self.actors])

    def _check_ready(self, actor: Any) -> int:
        return self._read_ready(actor.ready.remote())

    def _read_ready(self, ref: Any) -> int:
        try:
            pid, problem = self._ray.get(ref)
        except self._ray.exceptions.RayError as exc:
            raise WorkerError(f"A Ray worker could not start: {_first_line(exc)}") from exc
        if problem is not None:
            raise WorkerError(f"A Ray worker could not load the model: {problem}")
        return int(pid)

    def pids(self) -> list[int]:
        """The process id of each live actor (for tests and logs)."""
        return [self._check_ready(actor) for actor in self.actors]

    def __call__(self, settings: Sequence[Setting]) -> Iterator[Metrics]:
        """Score `settings` on the actors, yielding their metrics in order."""
        if self._ray is None:
            raise WorkerError("The Ray workers are not started.")
        return self._score(list(settings))

    def _score(self, settings: list[Setting]) -> Iterator[Metrics]:
        ray = self._ray
        waiting = deque(range(len(settings)))
        idle = list(self.actors)
        running: dict[Any, tuple[int, Any]] = {}
        done: dict[int, Metrics] = {}
        tries = [0] * len(settings)
        given = 0
        while given < len(settings):
            while given in done:
                yield done.pop(given)
                given += 1
            if given == len(settings):
                break
            while waiting and idle:
                index, actor = waiting.popleft(), idle.pop(0)
                running[actor.score.remote(settings[index])] = (index, actor)
            ready, _ = ray.wait(list(running), num_returns=1)
            for ref in ready:
                index, actor = running.pop(ref)
                try:
                    done[index] = ray.get(ref)
                    idle.append(actor)
                except ray.exceptions.RayActorError as exc:
                    tries[index] += 1
                    if tries[index] >= MAX_TRIES:
                        raise WorkerError(
                            f"The setting {settings[index].layers} x {settings[index].alphas} "
                            f"lost its Ray worker {MAX_TRIES} times: {_first_line(exc)}"
                        ) from exc
                    waiting.appendleft(index)  # scored again, first, on the next free actor
                    idle.append(self._replace(actor))
                except ray.exceptions.RayTaskError as exc:
                    cause = exc.as_instanceof_cause()
                    if isinstance(cause, SteerSwarmError):
                        raise type(cause)(*cause.args) from exc
                    raise WorkerError(
                        f"A Ray worker failed while scoring: {_first_line(exc)}"
                    ) from exc

    def _replace(self, dead: Any) -> Any:
        """A new actor in place of `dead` (it loads the model again)."""
        fresh = self._new_actor()
        self.actors = [fresh if actor is dead else actor for actor in self.actors]
        self.replaced += 1
        return fresh

    def close(self) -> None:
        ray = self._ray
        if ray is None:
            return
        for actor in self.actors:
            ray.kill(actor)
        self.actors = []
        if self._started_ray:
            ray.shutdown()
            self._started_ray = False
        self._ray = None


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1][:300] if lines else type(exc).__name__
