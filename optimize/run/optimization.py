"""Running a search on a model's steering vectors, and applying its result.

`run_optimization` wires the search loop (`optimize.search.loop`) to a Steerer and
a Fitness the caller built; `apply_best` makes a result's best setting the
active vectors.
"""

from __future__ import annotations

import threading
import time
from functools import partial
from collections.abc import Callable, Sequence

import numpy as np

from steering.rng import preserved_rng
from optimize.scoring.batched import batched_evaluator
from optimize.config.configs import FitnessConfig, PsoConfig
from optimize.errors import OptimizationCancelled
from optimize.run.first_round import FINALISTS, FINALISTS_PHASE, FIRST_ROUND, FirstRound
from optimize.run.first_round import pick_finalists, score_finalists
from optimize.scoring.metrics import Fitness, PerDocumentFitness
from optimize.guard.objective import Objective, ObjectiveOptions, TargetObjective, make_objective
from optimize.guard.split import HELDOUT, SEARCH, DocumentSplit, PairedTest, paired_test
from optimize.run.results import (
    Evaluation,
    HeldOutScores,
    OptimizationResult,
    Progress,
)
from optimize.run.journal import BASELINE, HELDOUT as HELDOUT_ENTRY, SEARCH as SEARCH_ENTRY
from optimize.run.journal import Journal, JournalFile, run_identity
from optimize.scoring.placing import Placer, SettingScorer, position_of
from optimize.search.loop import BatchScoreFn, one_by_one, run_search
from optimize.config.space import SearchSpace, Setting
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
    workers: BatchScoreFn | None = None,
    journal: JournalFile | None = None,
    first_round: Fitness | None = None,
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

    `strategy` names a registered search strategy (`optimize.search.strategies`),
    `objective` a registered objective (`optimize.guard.objective`), ranking within
    `objective_options` (default: `ObjectiveOptions()`).

    `workers` scores the search's settings in place of `fitness` here: a
    batch evaluator giving each setting what this `fitness` would
    (`optimize.workers.ray.RayWorkers`: Ray actors that loaded the same model,
    vectors and fitness). The baseline and held-out scores stay here.
    `journal` appends every evaluation that ran the model to a journal
    (`optimize.run.journal`) as it is scored; with `resume` it continues that
    journal's run, reusing what it holds, so the history equals an
    uninterrupted run's. The journal is closed, not removed: the caller
    calls `journal.finish()` once the result is saved.

    `first_round` (optimize/run/first_round.py) scores the search's settings in
    place of `fitness`, on fewer documents (`workers` then score what it
    scores); the best FINALISTS distinct settings are then scored by
    `fitness`, and the best of those is the result's best. The result's
    history holds the baseline and the finalists; the first round's
    evaluations are in `result.first_round`.

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
    scorer = SettingScorer(steerer, originals, indices, fitness)
    if first_round is not None and not first_round.samples < fitness.samples:
        raise InvalidInputError(
            f"The first round must score fewer documents than the search's {fitness.samples}, "
            f"got {first_round.samples}: lower it, or set it to 0."
        )
    first = None if first_round is None else SettingScorer(steerer, originals, indices, first_round)
    identity = run_identity(
        steerer.info.name, steerer.info.num_layers, scorer.records, fitness, heldout,
        space, pso, ranking, strategy, first_round,
    )  # fmt: skip
    opened = None if journal is None else journal.open(identity)
    try:
        return _optimize(
            steerer,
            scorer,
            fitness,
            space,
            pso,
            ranking,
            strategy,
            on_progress,
            cancel,
            started,
            heldout,
            workers,
            opened,
            first,
        )
    finally:
        if opened is not None:
            opened.close()
        _restore(steerer, originals)


def _optimize(
    steerer: Steerer,
    scorer: SettingScorer,
    fitness: Fitness,
    space: SearchSpace,
    pso: PsoConfig,
    ranking: Objective,
    strategy: str,
    on_progress: Callable[[Progress], None] | None,
    cancel: threading.Event | None,
    started: float,
    heldout: Fitness | None,
    workers: BatchScoreFn | None,
    journal: Journal | None,
    first: SettingScorer | None = None,
) -> OptimizationResult:
    finalists = 0 if first is None else FINALISTS
    total = 1 + pso.evaluations + finalists + (0 if heldout is None else 2)
    baseline = None if journal is None else journal.baseline
    if baseline is None:
        t0 = time.perf_counter()
        metrics = fitness.metrics(())
        baseline = Evaluation.scored(-1, -1, Setting((), ()), metrics, time.perf_counter() - t0)
        if journal is not None:
            journal.record(BASELINE, baseline)
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

    # On an accelerator, a fitness that scores several settings at once gets
    # each iteration's settings together (one batched pass). On a CPU the
    # batched pass measured ~20 % more CPU than one at a time (the prefix
    # store already spares each setting the layers below it; docs/performance.md).
    searched = scorer if first is None else first
    many = getattr(searched.fitness, "metrics_many", None) if steerer.device.type != "cpu" else None
    local = one_by_one(searched) if many is None else batched_evaluator(many, searched.vectors_of)

    searching = "search" if first is None else FIRST_ROUND

    def on_evaluation(evaluation: Evaluation, phase: str | None = None) -> None:
        nonlocal best, done
        if journal is not None and phase is None:  # finalists are journaled as FINAL
            journal.record(SEARCH_ENTRY, evaluation)
        done += 1
        if ranking.better(evaluation.metrics, None if best is None else best.metrics):
            best = evaluation
        report(evaluation, phase or searching)

    outcome = run_search(
        space,
        len(scorer.records),
        pso,
        local if workers is None else workers,
        ranking,
        strategy=strategy,
        cancel=cancel,
        on_evaluation=on_evaluation,
        earlier=None if journal is None else journal.search,
        convert=partial(scorer.to_alphas, space),
    )
    if not outcome.history:
        raise OptimizationCancelled(
            "The optimization was cancelled before any steering setting was scored."
        )
    history, cancelled, first_round = outcome.history, outcome.cancelled, None
    if first is not None:
        first_round = FirstRound(first.fitness.samples, tuple(outcome.history))
        best = None  # the first round's scores are on fewer documents: not comparable
        finals = [] if cancelled else pick_finalists(outcome.history, ranking, finalists)
        total = done + len(finals) + (0 if heldout is None else 2)  # fewer distinct: fewer finals
        history = score_finalists(
            scorer, finals, pso.iterations, cancel, journal, on_evaluation, FINALISTS_PHASE
        )
        cancelled = cancelled or len(history) < len(finals)
        if not history:  # cancelled before a finalist: the run has no best to offer
            raise OptimizationCancelled(
                "The optimization was cancelled before any setting was scored on all documents."
            )
    found = ranking.best(history)
    heldout_scores = None
    if heldout is not None and not cancelled:
        target_only = TargetObjective(fitness.higher_is_better).best(history)
        templates = [baseline, found]
        if target_only.setting.key != found.setting.key:
            templates.append(target_only)
        total = done + len(templates)  # now known: the search may have stopped early

        def step() -> None:
            nonlocal done
            done += 1
            report(None, "heldout")

        heldout_scores = _score_heldout(
            heldout, templates, lambda e: scorer.vectors_of(e.setting), cancel, step, journal
        )
        cancelled = heldout_scores is None
    return OptimizationResult(
        baseline=baseline,
        best=found,
        history=[baseline, *history],
        vector_indices=tuple(r.index for r in scorer.records),
        vectors=scorer.records,
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
        first_round=first_round,
    )


def _score_heldout(
    heldout: Fitness,
    templates: Sequence[Evaluation],
    vectors_of: Callable[[Evaluation], list[SteeringVector]],
    cancel: threading.Event | None,
    step: Callable[[], None],
    journal: Journal | None,
) -> HeldOutScores | None:
    """`templates` (the baseline, the objective's best and, when another
    setting, the target-only best) scored on `heldout`; None when cancelled
    before the end. Each is journaled, and reused from the `journal`."""
    scored: list[Evaluation] = []
    per_document: list[tuple[float, ...]] = []
    for template in templates:
        if cancel is not None and cancel.is_set():
            return None
        kept = None if journal is None else journal.heldout.get(template.setting.key)
        if kept is not None:
            scored.append(kept[0])
            per_document.append(kept[1])
        else:
            vectors = [] if template.is_baseline else vectors_of(template)
            t0 = time.perf_counter()
            values: tuple[float, ...] = ()
            if isinstance(heldout, PerDocumentFitness):
                metrics, values = heldout.document_scores(vectors)
            else:
                metrics = heldout.metrics(vectors)
            per_document.append(values)
            scored.append(
                Evaluation.scored(
                    template.iteration,
                    template.particle,
                    template.setting,
                    metrics,
                    time.perf_counter() - t0,
                )
            )
            if journal is not None:
                journal.record(HELDOUT_ENTRY, scored[-1], values)
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


def apply_best(
    steerer: Steerer, result: OptimizationResult, evaluation: Evaluation | None = None
) -> tuple[SteeringVector, ...]:
    """Make a setting of the result the active vectors: `evaluation` (one of
    its search evaluations, e.g. a point of its Pareto front; default: the
    best). Each optimized vector is recaptured at that layer with that alpha;
    the others are kept.

    Raises:
        IncompatibleVectorError: the result was made on another model.
        InvalidInputError: the active vectors are no longer the ones optimized,
            or `evaluation` is not a search evaluation of this result.
    """
    info = steerer.info
    if info.name != result.model or info.num_layers != result.num_layers:
        raise IncompatibleVectorError(
            f"This result was found on {result.model} ({result.num_layers} layers); "
            f"the loaded model is {info.name} ({info.num_layers} layers)."
        )
    scored = {(e.iteration, e.particle): e.setting.key for e in result.evaluations}
    if evaluation is not None and (
        evaluation.is_baseline
        or scored.get((evaluation.iteration, evaluation.particle)) != evaluation.setting.key
    ):
        raise InvalidInputError(
            "That setting is not one this optimization scored; run it again or pick "
            "a point of its front."
        )
    placer = Placer(steerer, steerer.vectors)
    tuned = result.tuned(evaluation)
    for item in tuned:
        position_of(placer.vectors, item.vector)  # all found before any recapture
    vectors = placer.place(tuned)
    steerer.set_vectors(vectors)
    return tuple(vectors)
