"""The particle swarm loop, and running it on a model's steering vectors.

`swarm_search` is the model-free loop: seeded, cached, cancellable, one
callback per evaluation. `run_optimization` wires it to a Steerer and an
lm-eval fitness; `apply_best` makes a result's best setting the active vectors.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from optimize._pyswarms import global_best_pso
from optimize._rng import preserved_rng, seeded_numpy
from optimize.config import FitnessConfig, PsoConfig
from optimize.errors import OptimizationCancelled
from optimize.fitness import LmEvalFitness
from optimize.results import (
    Evaluation,
    HeldOutScores,
    OptimizationResult,
    Progress,
    VectorRecord,
)
from optimize.space import Key, SearchSpace, Setting
from steering.capture import recapture
from steering.engine import Steerer
from steering.errors import IncompatibleVectorError, InvalidInputError
from steering.vector import SteeringVector

ScoreFn = Callable[[Setting], tuple[float, float]]


class _Cancelled(Exception):
    """Raised out of the objective to stop pyswarms between evaluations."""


@dataclass
class SearchOutcome:
    """What `swarm_search` did: every evaluation in order, and whether it was cancelled."""

    history: list[Evaluation]
    cancelled: bool


def better(a: float, b: float, higher_is_better: bool = True) -> bool:
    """Whether score `a` beats score `b` (NaN never beats anything; anything beats NaN)."""
    if math.isnan(a):
        return False
    if math.isnan(b):
        return True
    return a > b if higher_is_better else a < b


def best_of(evaluations: Sequence[Evaluation], higher_is_better: bool = True) -> Evaluation:
    """The best evaluation; the earliest one on a tie."""
    best = evaluations[0]
    for evaluation in evaluations[1:]:
        if better(evaluation.score, best.score, higher_is_better):
            best = evaluation
    return best


def swarm_search(
    space: SearchSpace,
    n_vectors: int,
    pso: PsoConfig,
    score: ScoreFn,
    *,
    higher_is_better: bool = True,
    cancel: threading.Event | None = None,
    on_evaluation: Callable[[Evaluation], None] | None = None,
) -> SearchOutcome:
    """Search `space` with a pyswarms GlobalBestPSO seeded by `pso.seed`.

    `score(setting)` returns (score, stderr); it is called at most once per
    distinct rounded setting (later visits reuse the score and are recorded
    with `cached=True`). `cancel` is checked before each evaluation; when it
    is set the search stops there and the outcome is marked cancelled.
    `score` and `on_evaluation` run with global random state preserved, so
    neither can change the swarm's course; numpy's global state is the
    caller's again afterwards.
    """
    history: list[Evaluation] = []
    cache: dict[Key, tuple[float, float]] = {}
    iteration = -1

    def objective(positions: np.ndarray) -> np.ndarray:
        nonlocal iteration
        iteration += 1
        costs = []
        for particle, row in enumerate(positions):
            if cancel is not None and cancel.is_set():
                raise _Cancelled
            started = time.perf_counter()
            setting = space.decode(row)
            cached = setting.key in cache
            if not cached:
                with preserved_rng():
                    cache[setting.key] = score(setting)
            value, stderr = cache[setting.key]
            evaluation = Evaluation(
                iteration=iteration,
                particle=particle,
                layers=setting.layers,
                alphas=setting.alphas,
                score=float(value),
                stderr=float(stderr),
                seconds=time.perf_counter() - started,
                cached=cached,
            )
            history.append(evaluation)
            if on_evaluation is not None:
                with preserved_rng():
                    on_evaluation(evaluation)
            if math.isnan(evaluation.score):
                costs.append(math.inf)
            else:
                costs.append(-evaluation.score if higher_is_better else evaluation.score)
        return np.asarray(costs, dtype=float)

    cancelled = False
    with seeded_numpy(pso.seed):
        optimizer = global_best_pso(
            pso.particles, 2 * n_vectors, pso.options, space.bounds(n_vectors)
        )
        try:
            optimizer.optimize(objective, iters=pso.iterations, verbose=False)
        except _Cancelled:
            cancelled = True
    return SearchOutcome(history=history, cancelled=cancelled)


def _check_indices(vector_indices: Sequence[int], count: int) -> tuple[int, ...]:
    if count == 0:
        raise InvalidInputError("There are no active steering vectors to optimize. Add one first.")
    indices = []
    for index in vector_indices:
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise InvalidInputError(f"A vector index must be a whole number, got {index!r}.")
        if not 0 <= int(index) < count:
            raise InvalidInputError(
                f"There is no vector number {int(index) + 1}: {count} vector(s) are active."
            )
        if int(index) in indices:
            raise InvalidInputError(f"Vector number {int(index) + 1} is selected twice.")
        indices.append(int(index))
    if not indices:
        raise InvalidInputError("Select at least one vector to optimize.")
    return tuple(indices)


def _restore(steerer: Steerer, vectors: tuple[SteeringVector, ...]) -> None:
    current = steerer.vectors
    if len(current) != len(vectors) or any(
        a is not b for a, b in zip(current, vectors, strict=True)
    ):
        steerer.set_vectors(vectors)


def check_heldout(fitness: FitnessConfig, heldout: FitnessConfig | None) -> None:
    """Raise InvalidInputError when the held-out task is the search task itself
    (its scores would not be held out)."""
    if heldout is not None and (heldout.task, heldout.include_path) == (
        fitness.task,
        fitness.include_path,
    ):
        raise InvalidInputError(
            f"The held-out task is the search task {fitness.task!r}: pick a task whose "
            "documents the search does not score."
        )


def run_optimization(
    steerer: Steerer,
    vector_indices: Sequence[int],
    fitness: FitnessConfig,
    space: SearchSpace,
    pso: PsoConfig,
    on_progress: Callable[[Progress], None] | None = None,
    cancel: threading.Event | None = None,
    heldout: FitnessConfig | None = None,
) -> OptimizationResult:
    """Search the layer and alpha of the selected active vectors for the best
    lm-eval score.

    `vector_indices` are 0-based positions in `steerer.vectors`. Each particle
    is scored with the active vectors, the selected ones recaptured at the
    particle's layers and scaled by its alphas. The unsteered baseline is
    scored first. `on_progress` is called after the baseline and after every
    evaluation. Setting `cancel` stops the run before the next evaluation; the
    result is then marked cancelled. The active vectors are the same objects
    afterwards, whether the run succeeds, fails or is cancelled. The caller
    holds the model lock; this takes no lock beyond `steerer.applied`.

    `heldout` names a second task whose documents the search never sees: it is
    loaded before the search (so a bad name fails early) and, after the
    search, scores the unsteered model and the best setting once each, into
    `result.heldout`; `on_progress` is called after each (phase "heldout").
    A cancel before then skips it (the result is marked cancelled). The
    held-out task must not be the search task itself.

    Raises:
        InvalidInputError: a bad selection, a layer range outside the model,
            an unknown task or metric.
        FitnessError: lm-eval could not load the task or failed while scoring.
        OptimizationCancelled: cancelled before any setting was scored.
    """
    started = time.perf_counter()
    originals = steerer.vectors
    indices = _check_indices(vector_indices, len(originals))
    space.check_model(steerer.info.num_layers, steerer.info.name)
    check_heldout(fitness, heldout)
    try:
        return _optimize(
            steerer,
            originals,
            indices,
            fitness,
            space,
            pso,
            on_progress,
            cancel,
            started,
            heldout,
        )
    finally:
        _restore(steerer, originals)


def _optimize(
    steerer: Steerer,
    originals: tuple[SteeringVector, ...],
    indices: tuple[int, ...],
    fitness: FitnessConfig,
    space: SearchSpace,
    pso: PsoConfig,
    on_progress: Callable[[Progress], None] | None,
    cancel: threading.Event | None,
    started: float,
    heldout: FitnessConfig | None = None,
) -> OptimizationResult:
    def check_cancel(what: str) -> None:
        if cancel is not None and cancel.is_set():
            raise OptimizationCancelled(f"The optimization was cancelled {what}.")

    total = 1 + pso.evaluations + (0 if heldout is None else 2)
    check_cancel("before it started")
    scorer = LmEvalFitness(steerer, fitness)
    heldout_scorer = None if heldout is None else LmEvalFitness(steerer, heldout)
    check_cancel("before the baseline was scored")
    t0 = time.perf_counter()
    base_score, base_stderr = scorer.score(())
    baseline = Evaluation(
        iteration=-1,
        particle=-1,
        layers=(),
        alphas=(),
        score=base_score,
        stderr=base_stderr,
        seconds=time.perf_counter() - t0,
    )
    higher = scorer.higher_is_better
    best: Evaluation | None = None
    done = 1

    def report(latest: Evaluation | None, phase: str = "search") -> None:
        if on_progress is not None:
            on_progress(
                Progress(
                    done=done,
                    total=total,
                    best_score=None if best is None else best.score,
                    baseline=baseline.score,
                    latest=latest,
                    phase=phase,
                )
            )

    with preserved_rng():
        report(baseline)

    recaptured: dict[tuple[int, int], SteeringVector] = {}

    def particle_vectors(setting: Setting) -> list[SteeringVector]:
        vectors = list(originals)
        for slot, index in enumerate(indices):
            layer = setting.layers[slot]
            base = recaptured.get((index, layer))
            if base is None:
                # A direction only means something at its own layer: recapture
                # the concept there (outside `applied`: capturing swaps vectors).
                base = recaptured[(index, layer)] = recapture(steerer, originals[index], layer)
            vectors[index] = base.with_coeff(setting.alphas[slot])
        return vectors

    def score(setting: Setting) -> tuple[float, float]:
        return scorer.score(particle_vectors(setting))

    def on_evaluation(evaluation: Evaluation) -> None:
        nonlocal best, done
        done += 1
        if best is None or better(evaluation.score, best.score, higher):
            best = evaluation
        report(evaluation)

    outcome = swarm_search(
        space,
        len(indices),
        pso,
        score,
        higher_is_better=higher,
        cancel=cancel,
        on_evaluation=on_evaluation,
    )
    if not outcome.history:
        raise OptimizationCancelled(
            "The optimization was cancelled before any steering setting was scored."
        )
    found = best_of(outcome.history, higher)
    cancelled = outcome.cancelled
    heldout_scores = None
    if heldout_scorer is not None and not cancelled:
        evaluations: list[Evaluation] = []
        for template, vectors in (
            (baseline, ()),
            (found, particle_vectors(Setting(found.layers, found.alphas))),
        ):
            if cancel is not None and cancel.is_set():
                cancelled = True
                break
            t0 = time.perf_counter()
            value, stderr = heldout_scorer.score(vectors)
            evaluations.append(
                dataclasses.replace(
                    template,
                    score=value,
                    stderr=stderr,
                    seconds=time.perf_counter() - t0,
                    cached=False,
                )
            )
            done += 1
            with preserved_rng():
                report(None, "heldout")
        if not cancelled:
            heldout_scores = HeldOutScores(
                fitness=heldout_scorer.config,
                metric=heldout_scorer.metric_key,
                higher_is_better=heldout_scorer.higher_is_better,
                samples=heldout_scorer.samples,
                baseline=evaluations[0],
                best=evaluations[1],
            )
    return OptimizationResult(
        baseline=baseline,
        best=found,
        history=[baseline, *outcome.history],
        vector_indices=indices,
        vectors=tuple(
            VectorRecord(
                index=i,
                layer=originals[i].layer,
                coeff=originals[i].coeff,
                prompts=originals[i].prompts,
                contrast_prompts=originals[i].contrast_prompts,
            )
            for i in indices
        ),
        seed=pso.seed,
        fitness=fitness,
        space=space,
        pso=pso,
        model=steerer.info.name,
        num_layers=steerer.info.num_layers,
        metric=scorer.metric_key,
        higher_is_better=higher,
        samples=scorer.samples,
        cancelled=cancelled,
        wall_seconds=time.perf_counter() - started,
        heldout=heldout_scores,
    )


def apply_best(steerer: Steerer, result: OptimizationResult) -> tuple[SteeringVector, ...]:
    """Make the result's best setting the active vectors: each optimized vector
    is recaptured at its best layer with its best alpha; the others are kept.

    Raises:
        IncompatibleVectorError: the result was made on another model.
        InvalidInputError: the active vectors are no longer the ones optimized.
    """
    info = steerer.info
    if info.name != result.model or info.num_layers != result.num_layers:
        raise IncompatibleVectorError(
            f"This result was found on {result.model} ({result.num_layers} layers); "
            f"the loaded model is {info.name} ({info.num_layers} layers)."
        )
    current = steerer.vectors
    for record in result.vectors:
        if not (
            record.index < len(current)
            and current[record.index].prompts == record.prompts
            and current[record.index].contrast_prompts == record.contrast_prompts
        ):
            raise InvalidInputError(
                f"The active vectors changed since this optimization ran: vector "
                f"{record.index + 1} is no longer the one made from "
                f"{' | '.join(record.prompts)[:60]!r}. Restore those vectors, then apply again."
            )
    vectors = list(current)
    for record, layer, alpha in zip(
        result.vectors, result.best.layers, result.best.alphas, strict=True
    ):
        vectors[record.index] = recapture(steerer, current[record.index], layer).with_coeff(alpha)
    steerer.set_vectors(vectors)
    return tuple(vectors)
