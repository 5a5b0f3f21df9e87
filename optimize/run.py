"""Running a search on a model's steering vectors, and applying its result.

`run_optimization` wires the search loop (`optimize.search`) to a Steerer and
a Fitness the caller built; `apply_best` makes a result's best setting the
active vectors.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

import numpy as np

from optimize._rng import preserved_rng
from optimize.config import FitnessConfig, PsoConfig
from optimize.errors import OptimizationCancelled
from optimize.metrics import Fitness, Metrics, PerDocumentFitness
from optimize.objective import Objective, ObjectiveOptions, TargetObjective, make_objective
from optimize.split import HELDOUT, SEARCH, DocumentSplit, PairedTest, paired_test
from optimize.results import (
    Evaluation,
    HeldOutScores,
    OptimizationResult,
    Progress,
    TunedVector,
    VectorRecord,
    tune,
)
from optimize.search import one_by_one, run_search
from optimize.space import SearchSpace, Setting
from steering.capture import recapture
from steering.engine import Steerer
from steering.errors import IncompatibleVectorError, InvalidInputError
from steering.vector import SteeringVector


def _check_indices(vector_indices: Sequence[int], count: int) -> tuple[int, ...]:
    if count == 0:
        raise InvalidInputError("There are no active steering vectors to optimize. Add one first.")
    indices: list[int] = []
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


def _split_sides(fitness: Fitness, heldout: Fitness | None) -> bool:
    """Whether the two score the searched and the held-out documents of one split."""
    split = getattr(fitness, "split", None)
    return (
        split is not None
        and getattr(heldout, "split", None) == split
        and (getattr(fitness, "side", None), getattr(heldout, "side", None)) == (SEARCH, HELDOUT)
    )


def check_heldout(fitness: FitnessConfig, heldout: FitnessConfig | None) -> None:
    """Raise InvalidInputError when the held-out task is the search task itself
    (its scores would not be held out). A split of one task's documents into
    searched and held-out ones is checked by the fitnesses, not here."""
    if heldout is not None and (heldout.task, heldout.include_path) == (
        fitness.task,
        fitness.include_path,
    ):
        raise InvalidInputError(
            f"The held-out task is the search task {fitness.task!r}: pick a task whose "
            "documents the search does not score."
        )


def _record(index: int, vector: SteeringVector) -> VectorRecord:
    return VectorRecord(
        index=index,
        layer=vector.layer,
        alpha=vector.alpha,
        prompts=vector.prompts,
        contrast_prompts=vector.contrast_prompts,
        vector_id=vector.id,
    )


def _position(current: Sequence[SteeringVector], record: VectorRecord) -> int:
    """Where the vector `record` describes is among `current`, or
    InvalidInputError. The one place a result finds its vectors again: by id
    (a vector keeps its id when it is recaptured or rescaled, so a result can be
    applied again after Apply best), or for results without ids by position."""
    if record.vector_id is not None:
        for position, vector in enumerate(current):
            if vector.id == record.vector_id:
                return position
        raise InvalidInputError(
            "The active vectors changed since this optimization ran: the vector made from "
            f"{' | '.join(record.prompts)[:60]!r} is no longer active. Restore it (load its "
            "vector file), then apply again."
        )
    index = record.index
    if (
        index < len(current)
        and current[index].prompts == record.prompts
        and current[index].contrast_prompts == record.contrast_prompts
    ):
        return index
    raise InvalidInputError(
        f"The active vectors changed since this optimization ran: vector "
        f"{index + 1} is no longer the one made from "
        f"{' | '.join(record.prompts)[:60]!r}. Restore those vectors, then apply again."
    )


class _Placer:
    """Builds the vector list a setting stands for: the active vectors, each
    tuned one recaptured at its layer and scaled by its alpha. A direction only
    means something at its own layer, so the concept is recaptured there
    (once per vector and layer; outside `applied`: capturing swaps vectors)."""

    def __init__(self, steerer: Steerer, vectors: Sequence[SteeringVector]) -> None:
        self.steerer = steerer
        self.vectors = tuple(vectors)
        self._recaptured: dict[tuple[int, int], SteeringVector] = {}

    def place(self, tuned: Sequence[TunedVector]) -> list[SteeringVector]:
        """The vectors with each of `tuned` in place (InvalidInputError when
        one is no longer among them)."""
        vectors = list(self.vectors)
        for item in tuned:
            index = _position(self.vectors, item.vector)
            base = self._recaptured.get((index, item.layer))
            if base is None:
                base = recapture(self.steerer, self.vectors[index], item.layer)
                self._recaptured[(index, item.layer)] = base
            vectors[index] = base.with_alpha(item.alpha)
        return vectors


def run_optimization(
    steerer: Steerer,
    vector_indices: Sequence[int],
    fitness: Fitness,
    space: SearchSpace,
    pso: PsoConfig,
    on_progress: Callable[[Progress], None] | None = None,
    cancel: threading.Event | None = None,
    heldout: Fitness | None = None,
    *,
    objective: str = "target",
    strategy: str = "pso",
    objective_options: ObjectiveOptions | None = None,
) -> OptimizationResult:
    """Search the layer and alpha of the selected active vectors for the
    setting the `objective` ranks best, each scored by `fitness`.

    `fitness` is built by the caller on this `steerer` (for lm-eval:
    `LmEvalFitness(steerer, config)`). `vector_indices` are 0-based positions
    in `steerer.vectors`. Each setting is scored with the active vectors, the
    selected ones recaptured at the setting's layers and scaled by its alphas.
    The unsteered baseline is scored first. `on_progress` is called after the
    baseline and after every evaluation. Setting `cancel` stops the run before
    the next evaluation; the result is then marked cancelled. The active
    vectors are the same objects afterwards, whether the run succeeds, fails
    or is cancelled. The caller holds the model lock.

    `heldout` scores, after the search, the unsteered model and the best
    setting once each on documents the search never saw, into
    `result.heldout` (and the target-only best too, when the objective chose
    another setting); `on_progress` is called after each (phase "heldout"). A
    cancel before then skips it. It must not score the search task itself,
    unless both are the two sides of one `DocumentSplit` of it (an
    `LmEvalFitness` built with `split=` and `side=SEARCH` / `HELDOUT`).
    A fitness that also gives per-document values (`PerDocumentFitness`)
    gets a paired test of each held-out comparison.

    `strategy` names a registered search strategy (`optimize.strategies`),
    `objective` a registered objective (`optimize.objective`), ranking within
    `objective_options` (default: `ObjectiveOptions()`).

    Raises:
        InvalidInputError: a bad selection, a layer range outside the model,
            an unknown strategy or objective, a held-out task that is the
            search task.
        FitnessError: lm-eval failed while scoring.
        OptimizationCancelled: cancelled before any setting was scored.
    """
    started = time.perf_counter()
    originals = steerer.vectors
    indices = _check_indices(vector_indices, len(originals))
    space.check_model(steerer.info.num_layers, steerer.info.name)
    if not _split_sides(fitness, heldout):
        check_heldout(fitness.config, None if heldout is None else heldout.config)
    ranking = make_objective(objective, fitness.higher_is_better, objective_options)
    if cancel is not None and cancel.is_set():
        raise OptimizationCancelled("The optimization was cancelled before it started.")
    try:
        return _optimize(
            steerer,
            originals,
            indices,
            fitness,
            space,
            pso,
            ranking,
            strategy,
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
    fitness: Fitness,
    space: SearchSpace,
    pso: PsoConfig,
    ranking: Objective,
    strategy: str,
    on_progress: Callable[[Progress], None] | None,
    cancel: threading.Event | None,
    started: float,
    heldout: Fitness | None,
) -> OptimizationResult:
    total = 1 + pso.evaluations + (0 if heldout is None else 2)
    records = tuple(_record(i, originals[i]) for i in indices)
    placer = _Placer(steerer, originals)
    t0 = time.perf_counter()
    metrics = fitness.metrics(())
    baseline = Evaluation.scored(-1, -1, Setting((), ()), metrics, time.perf_counter() - t0)
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
                    best=best,
                )
            )

    with preserved_rng():
        report(baseline)

    def score(setting: Setting) -> Metrics:
        return fitness.metrics(placer.place(tune(records, setting)))

    def on_evaluation(evaluation: Evaluation) -> None:
        nonlocal best, done
        done += 1
        if ranking.better(evaluation.metrics, None if best is None else best.metrics):
            best = evaluation
        report(evaluation)

    outcome = run_search(
        space,
        len(indices),
        pso,
        one_by_one(score),
        ranking,
        strategy=strategy,
        cancel=cancel,
        on_evaluation=on_evaluation,
    )
    if not outcome.history:
        raise OptimizationCancelled(
            "The optimization was cancelled before any steering setting was scored."
        )
    found = ranking.best(outcome.history)
    cancelled = outcome.cancelled
    heldout_scores = None
    if heldout is not None and not cancelled:
        target_only = TargetObjective(fitness.higher_is_better).best(outcome.history)
        templates = [baseline, found]
        if target_only.setting.key != found.setting.key:
            templates.append(target_only)
        total = done + len(templates)  # now known: the search may have stopped early

        def step() -> None:
            nonlocal done
            done += 1
            report(None, "heldout")

        heldout_scores = _score_heldout(
            heldout, templates, lambda e: placer.place(tune(records, e.setting)), cancel, step
        )
        cancelled = heldout_scores is None
    return OptimizationResult(
        baseline=baseline,
        best=found,
        history=[baseline, *outcome.history],
        vector_indices=indices,
        vectors=records,
        seed=pso.seed,
        fitness=fitness.config,
        space=space,
        pso=pso,
        model=steerer.info.name,
        num_layers=steerer.info.num_layers,
        metric=fitness.metric_key,
        higher_is_better=fitness.higher_is_better,
        samples=fitness.samples,
        cancelled=cancelled,
        wall_seconds=time.perf_counter() - started,
        heldout=heldout_scores,
        objective=ranking.name,
        strategy=strategy,
        objective_options=ranking.options,
        split=getattr(fitness, "split", None),
    )


def _score_heldout(
    heldout: Fitness,
    templates: Sequence[Evaluation],
    vectors_of: Callable[[Evaluation], list[SteeringVector]],
    cancel: threading.Event | None,
    step: Callable[[], None],
) -> HeldOutScores | None:
    """`templates` (the baseline, the objective's best and, when another
    setting, the target-only best) scored on `heldout`; None when cancelled
    before the end."""
    scored: list[Evaluation] = []
    per_document: list[tuple[float, ...]] = []
    for template in templates:
        if cancel is not None and cancel.is_set():
            return None
        vectors = [] if template.is_baseline else vectors_of(template)
        t0 = time.perf_counter()
        if isinstance(heldout, PerDocumentFitness):
            metrics, values = heldout.document_scores(vectors)
            per_document.append(values)
        else:
            metrics = heldout.metrics(vectors)
        scored.append(
            Evaluation.scored(
                template.iteration,
                template.particle,
                template.setting,
                metrics,
                time.perf_counter() - t0,
            )
        )
        with preserved_rng():
            step()

    def paired(index: int) -> PairedTest | None:
        if len(per_document) <= index or not per_document[0]:
            return None
        return paired_test(per_document[0], per_document[index], heldout.higher_is_better)

    extra = len(scored) == 3
    return HeldOutScores(
        fitness=heldout.config,
        metric=heldout.metric_key,
        higher_is_better=heldout.higher_is_better,
        samples=heldout.samples,
        baseline=scored[0],
        best=scored[1],
        paired=paired(1),
        target_only=scored[2] if extra else None,
        target_only_paired=paired(2) if extra else None,
        documents=str(getattr(heldout, "documents", "")),
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
    placer = _Placer(steerer, steerer.vectors)
    tuned = result.tuned()
    for item in tuned:
        _position(placer.vectors, item.vector)  # all found before any recapture
    vectors = placer.place(tuned)
    steerer.set_vectors(vectors)
    return tuple(vectors)
