"""Optuna's TPE and CMA-ES samplers, one swarm-sized batch of trials per ask/tell.

Each iteration asks Optuna for `config.particles` trials and tells it their
costs, so a run costs the same number of evaluations as a swarm of that
size and goes through the same loop (cache, cancel, history). A position row
is `[layer, alpha] * vectors` (`optimize.config.space`): layers are Optuna integers
over the whole layers the bounds hold, alphas floats over the alpha bounds;
the loop rounds alphas as it does for PSO, so every method lands on the same
settings and shares the cache's keys. Seeded from `config.seed`.

Optuna is optional inside text-generation-webui (requirements/webui.txt does
not list it): it is imported only when one of these strategies is built, and
a missing install says what to install. CMA-ES also needs the `cmaes` package.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, ClassVar

import numpy as np

from optimize.config.configs import PsoConfig
from optimize.search.strategies.base import Strategy
from steering.errors import InvalidInputError

_INSTALL = "pip install optuna==5.0.0 cmaes==0.13.1"


def _optuna() -> Any:
    try:
        import optuna
    except ImportError as exc:
        raise InvalidInputError(
            f"The search strategies 'tpe' and 'cmaes' need Optuna, which is not installed "
            f"here: {_INSTALL} (or use the default strategy 'pso')."
        ) from exc
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


class _OptunaStrategy(Strategy):
    """An Optuna study driven by ask/tell, `config.particles` trials per batch."""

    sampler_name: ClassVar[str]

    def __init__(self, bounds: tuple[np.ndarray, np.ndarray], config: PsoConfig) -> None:
        super().__init__(bounds, config)
        optuna = _optuna()
        lower, upper = (np.asarray(b, dtype=float) for b in bounds)
        if len(lower) % 2:
            raise InvalidInputError("A position row needs a (layer, alpha) pair per vector.")
        self._names = [f"{'layer' if i % 2 == 0 else 'alpha'}_{i // 2}" for i in range(len(lower))]
        self._distributions = {
            name: (
                optuna.distributions.IntDistribution(math.ceil(lo), math.floor(hi))
                if i % 2 == 0
                else optuna.distributions.FloatDistribution(float(lo), float(hi))
            )
            for i, (name, lo, hi) in enumerate(zip(self._names, lower, upper, strict=True))
        }
        with warnings.catch_warnings():  # multivariate TPE is marked experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler = self._sampler(optuna, config)
        self._study = optuna.create_study(sampler=sampler, direction="minimize")
        self._trials: list[Any] = []
        self._fail = optuna.trial.TrialState.FAIL

    def _sampler(self, optuna: Any, config: PsoConfig) -> Any:
        raise NotImplementedError

    def ask(self) -> np.ndarray:
        self._trials = [
            self._study.ask(self._distributions) for _ in range(self.config.particles)
        ]
        return np.array(
            [[float(t.params[name]) for name in self._names] for t in self._trials], dtype=float
        )

    def tell(self, costs: np.ndarray) -> None:
        for trial, cost in zip(self._trials, np.asarray(costs, dtype=float), strict=True):
            if math.isfinite(cost):
                self._study.tell(trial, float(cost))
            else:  # a setting that could not be scored: Optuna learns nothing from it
                self._study.tell(trial, state=self._fail)
        self._trials = []


class TpeStrategy(_OptunaStrategy):
    """Optuna's tree-structured Parzen estimator: the first batch at random,
    then trials drawn where good settings were denser than bad ones
    (multivariate, with a constant liar so one batch's trials spread out)."""

    name = "tpe"

    def _sampler(self, optuna: Any, config: PsoConfig) -> Any:
        return optuna.samplers.TPESampler(
            seed=config.seed,
            n_startup_trials=config.particles,
            multivariate=True,
            constant_liar=True,
        )


class CmaEsStrategy(_OptunaStrategy):
    """Optuna's CMA-ES: one generation of `particles` trials per iteration
    (the first at random, as Optuna starts it)."""

    name = "cmaes"

    def _sampler(self, optuna: Any, config: PsoConfig) -> Any:
        try:
            import cmaes  # noqa: F401 (Optuna imports it lazily, too late to explain)
        except ImportError as exc:
            raise InvalidInputError(
                f"The search strategy 'cmaes' needs the cmaes package: {_INSTALL}."
            ) from exc
        return optuna.samplers.CmaEsSampler(
            seed=config.seed,
            popsize=max(2, config.particles),
            n_startup_trials=0,
            warn_independent_sampling=False,  # the first generation is random on purpose
        )
