"""The search loop: one place for the cache, cancel, history, callbacks and
random state, around any ask/tell strategy.

Each iteration the strategy proposes a batch of positions; each decodes to a
setting (rounded layers and alphas); the settings not scored before go, as one
batch, to the evaluator (by default one by one, lazily, so a cancel stops
between two evaluations); the objective turns each setting's metrics into a
cost, and the strategy is told the batch's costs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from optimize.config.configs import PsoConfig
from optimize.config.space import Key, SearchSpace, Setting
from optimize.guard.objective import Objective, make_objective
from optimize.run.results import Evaluation
from optimize.scoring.metrics import Metrics, as_metrics
from optimize.search.strategies import make_strategy
from steering.rng import preserved_rng

ScoreFn = Callable[[Setting], "Metrics | tuple[float, float]"]
BatchScoreFn = Callable[[Sequence[Setting]], Iterable["Metrics | tuple[float, float]"]]


@dataclass
class SearchOutcome:
    """What a search did: every evaluation in order, and whether it was cancelled."""

    history: list[Evaluation]
    cancelled: bool


class SearchRandomState:
    """The search's own stream of numpy's global generator, seeded once.

    Strategy code runs inside `active()`, where numpy's global generator holds
    this stream; everywhere else (scoring, callbacks, the caller) it holds
    whatever it held, so nothing outside the strategy can move the search."""

    def __init__(self, seed: int) -> None:
        self._state = np.random.RandomState(seed).get_state()

    @contextmanager
    def active(self) -> Iterator[None]:
        saved = np.random.get_state()
        np.random.set_state(self._state)
        try:
            yield
        finally:
            self._state = np.random.get_state()
            np.random.set_state(saved)


def one_by_one(score: ScoreFn) -> BatchScoreFn:
    """The default evaluator: scores a batch lazily, one setting per step."""

    def evaluate(settings: Sequence[Setting]) -> Iterator[Metrics | tuple[float, float]]:
        return (score(setting) for setting in settings)

    return evaluate


def run_search(
    space: SearchSpace,
    n_vectors: int,
    config: PsoConfig,
    evaluate: BatchScoreFn,
    objective: Objective,
    *,
    strategy: str = "pso",
    cancel: threading.Event | None = None,
    on_evaluation: Callable[[Evaluation], None] | None = None,
    known: Mapping[Key, Metrics] | None = None,
    earlier: Mapping[Key, Evaluation] | None = None,
    convert: Callable[[Setting], Setting] | None = None,
) -> SearchOutcome:
    """Search `space` for `n_vectors` vectors with the registered `strategy`.

    `evaluate(settings)` gets each iteration's distinct, not yet scored
    settings in order and yields their metrics in that order; it is consumed
    one setting per evaluation, so a lazy evaluator is cancelled between two
    settings and a batched one is asked once per iteration. A setting is
    scored at most once per run (later visits are recorded `cached=True`).
    `cancel` is checked before each evaluation. Evaluations and
    `on_evaluation` run with global random state preserved, so they cannot
    change the search's course; the caller's state is left as it was.

    `known` holds settings already scored (say, read back from a journal):
    they are reused like cache hits, so replaying an interrupted run's seed
    with them reaches where it stopped without scoring anything twice.
    `earlier` holds evaluations an interrupted part of this same run made
    (its journal, `optimize.run.journal`): they are reused too, but recorded as
    they were first recorded (not cached, their own seconds), so a resumed
    run's history equals an uninterrupted one's.

    `convert` turns each decoded setting into the one that is scored, cached
    and recorded (the run's strength -> alpha conversion, `SearchSpace.to_alphas`).
    """
    history: list[Evaluation] = []
    cache: dict[Key, Metrics] = dict(known or {})
    replay: dict[Key, Evaluation] = dict(earlier or {})
    cache.update((key, e.metrics) for key, e in replay.items())
    rng = SearchRandomState(config.seed)
    with rng.active():
        proposer = make_strategy(strategy, space.bounds(n_vectors), config)
    for iteration in range(config.iterations):
        with rng.active():
            positions = np.asarray(proposer.ask(), dtype=float)
        settings = [space.decode(row) for row in positions]
        if convert is not None:
            with preserved_rng():
                settings = [convert(setting) for setting in settings]
        pending = list({s.key: s for s in settings if s.key not in cache}.values())
        scores = iter(evaluate(pending))
        costs = []
        for particle, setting in enumerate(settings):
            if cancel is not None and cancel.is_set():
                return SearchOutcome(history=history, cancelled=True)
            started = time.perf_counter()
            cached = setting.key in cache
            if not cached:
                with preserved_rng():
                    cache[setting.key] = as_metrics(next(scores))
            metrics = cache[setting.key]
            seconds = time.perf_counter() - started
            first = replay.pop(setting.key, None)
            if first is not None:
                cached, seconds = False, first.seconds
            evaluation = Evaluation.scored(iteration, particle, setting, metrics, seconds, cached)
            history.append(evaluation)
            if on_evaluation is not None:
                with preserved_rng():
                    on_evaluation(evaluation)
            costs.append(objective.cost(metrics))
        with rng.active():
            proposer.tell(np.asarray(costs, dtype=float))
    return SearchOutcome(history=history, cancelled=False)


def swarm_search(
    space: SearchSpace,
    n_vectors: int,
    pso: PsoConfig,
    score: ScoreFn,
    *,
    higher_is_better: bool = True,
    objective: str = "target",
    strategy: str = "pso",
    cancel: threading.Event | None = None,
    on_evaluation: Callable[[Evaluation], None] | None = None,
) -> SearchOutcome:
    """`run_search` with a one-setting-at-a-time `score` and a registered objective
    (by name) for a target metric of direction `higher_is_better`.

    `score(setting)` returns Metrics, or a (target, stderr) pair."""
    return run_search(
        space,
        n_vectors,
        pso,
        one_by_one(score),
        make_objective(objective, higher_is_better),
        strategy=strategy,
        cancel=cancel,
        on_evaluation=on_evaluation,
    )
