"""Running one optimization on a model's steering vectors, and applying its result.

`run_optimization` takes a `RunPlan` (what ranks, confirms and checks the
settings, the space, the swarm and the objective: built from a run's
settings by optimize/run/assembly.py, or by hand) and runs it in order:

1. the baseline on the search documents: the model with the active vectors
   the run does not tune (the same condition every setting is scored in);
2. the search, ranking every setting on the search documents;
3. the best few distinct settings that beat the baseline (the finalists) and
   the baseline on the confirmation documents (optimize/run/confirm.py);
4. the replies of the setting about to be recommended, checked for loops;
5. the baseline and the chosen setting once on the held-out documents.

The result's verdict (optimize/guard/verdict.py) says what was found and
whether anything is recommended. `apply_best` makes the recommendation the
active vectors.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np

from optimize.config.configs import FitnessConfig, PsoConfig
from optimize.config.space import SearchSpace, Setting
from optimize.errors import OptimizationCancelled
from optimize.guard.objective import Objective, ObjectiveOptions, make_objective, uses_task
from optimize.guard.split import HELDOUT, SEARCH, PairedTest, paired_test
from optimize.guard.verdict import Confirmation, Verdict, decide
from optimize.run.confirm import confirm_finalists, pick_finalists
from optimize.run.journal import (
    BASELINE,
    HELDOUT as HELDOUT_ENTRY,
    SEARCH as SEARCH_ENTRY,
    Journal,
    JournalFile,
    run_identity,
)
from optimize.run.results import Evaluation, HeldOutScores, OptimizationResult, Progress
from optimize.scoring.batched import batched_evaluator
from optimize.scoring.metrics import Fitness
from optimize.scoring.placing import Placer, SettingScorer, document_scores, position_of
from optimize.search.loop import BatchScoreFn, one_by_one, run_search
from steering.engine import Steerer
from steering.errors import IncompatibleVectorError, InvalidInputError
from steering.rng import preserved_rng
from steering.vector import SteeringVector

# A fluency check: whether replies steered by these vectors loop, and why.
FluencyCheck = Callable[[Sequence[SteeringVector]], "tuple[bool, str]"]


@dataclass(frozen=True)
class RunPlan:
    """What one run scores and how it ranks.

    `fitness` ranks every setting (the search documents); `confirm` scores
    the best `finalists` distinct settings and the baseline on documents that
    did not rank them (None: no confirmation, so nothing is recommended for a
    task run); `heldout` checks the chosen setting once after that (None: no
    check). `objective` names a registered objective (ranking within
    `options`), `strategy` a registered search strategy. `significance` is
    the level a finalist's paired gain must pass, divided among the
    finalists. `fluency` checks the replies of a setting about to be
    recommended (None: not checked). Concept strength (`scores_task`
    False) ranks the vector's own held-out prompts and is neither confirmed
    nor held out. `budget_seconds` above 0 plans the swarm's
    iterations after the baseline (`plan_budget`) so that the run ends
    within that many seconds of its start."""

    fitness: Fitness
    space: SearchSpace
    pso: PsoConfig
    objective: str = "target"
    options: ObjectiveOptions | None = None
    strategy: str = "pso"
    confirm: Fitness | None = None
    heldout: Fitness | None = None
    finalists: int = 3
    significance: float = 0.05
    fluency: FluencyCheck | None = None
    budget_seconds: float = 0.0

    @property
    def ranking(self) -> Objective:
        return make_objective(self.objective, self.fitness.higher_is_better, self.options)

    @property
    def scores_task(self) -> bool:
        """Whether the run scores a task (not concept strength)."""
        return uses_task(self.objective)

    @property
    def total(self) -> int:
        """Evaluations a full run scores: the one count every progress view uses."""
        confirm = 0 if self.confirm is None else 1 + self.finalists
        return 1 + self.pso.evaluations + confirm + (0 if self.heldout is None else 2)


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


def check_heldout(fitness: FitnessConfig, heldout: FitnessConfig | None) -> None:
    """Raise InvalidInputError when the held-out task is the search task itself
    (its scores would not be held out). Parts of one task's split are
    checked by `_check_sides`."""
    if heldout is not None and (heldout.task, heldout.include_path) == (
        fitness.task,
        fitness.include_path,
    ):
        raise InvalidInputError(
            f"The held-out task is the search task {fitness.task!r}: pick a task whose "
            "documents the search does not score."
        )


def _check_sides(plan: RunPlan) -> None:
    """The confirmation and held-out fitnesses must score other documents than
    the search: another task, or another part of the same split."""
    split = getattr(plan.fitness, "split", None)
    for other, side in ((plan.confirm, "confirm"), (plan.heldout, HELDOUT)):
        if other is None:
            continue
        same_split = split is not None and getattr(other, "split", None) == split
        if same_split and getattr(plan.fitness, "side", None) == SEARCH:
            if getattr(other, "side", None) == SEARCH:
                raise InvalidInputError(f"The {side} documents are the search documents.")
            continue
        check_heldout(plan.fitness.config, other.config)


def run_optimization(
    steerer: Steerer,
    vector_indices: Sequence[int],
    plan: RunPlan,
    *,
    on_progress: Callable[[Progress], None] | None = None,
    cancel: threading.Event | None = None,
    workers: BatchScoreFn | None = None,
    journal: JournalFile | None = None,
    settings: dict[str, object] | None = None,
    started: float | None = None,
) -> OptimizationResult:
    """Search the layer and alpha of the selected active vectors
    (`vector_indices`, 0-based positions in `steerer.vectors`) as `plan`
    says, and return the result with its verdict.

    Each setting is scored with the active vectors, the selected ones
    recaptured at the setting's layers and scaled by its alphas; the baseline
    with the others only. `on_progress` is called after every evaluation.
    Setting `cancel` stops the run before the next evaluation; the result is
    then marked cancelled. The active vectors are the same objects
    afterwards, whether the run succeeds, fails or is cancelled. The caller
    holds the model lock.

    `workers` scores the search's settings in place of `plan.fitness` (Ray
    actors that loaded the same model, vectors and fitness:
    optimize/workers/ray.py). `journal` appends every evaluation that ran the
    model as it is scored; opened with `resume`, it continues that journal's
    run, reusing what it holds, so the history equals an uninterrupted run's.
    The journal is closed, not removed: the caller calls `journal.finish()`
    once the result is saved. `settings` (the run's settings by name) go into
    the journal so that a page can rebuild the run to resume it. `started`
    (a `time.perf_counter()` value) is when the run began for its user,
    before its fitnesses were built: a time budget counts from there.

    Raises:
        InvalidInputError: a bad selection, a layer range outside the model,
            an unknown strategy or objective, confirmation or held-out
            documents that are the search's.
        FitnessError: lm-eval failed while scoring.
        OptimizationCancelled: cancelled before any setting was scored.
    """
    started = time.perf_counter() if started is None else started
    originals = steerer.vectors
    indices = _check_indices(vector_indices, len(originals))
    plan.space.check_model(steerer.info.num_layers, steerer.info.name)
    _check_sides(plan)
    ranking = plan.ranking
    if cancel is not None and cancel.is_set():
        raise OptimizationCancelled("The optimization was cancelled before it started.")
    scorer = SettingScorer(steerer, originals, indices, plan.fitness)
    identity = run_identity(
        steerer.info.name, steerer.info.num_layers, scorer.records, plan, settings
    )
    opened = None if journal is None else journal.open(identity)
    try:
        run = _Run(steerer, scorer, plan, ranking, on_progress, cancel, opened, started)
        return run.execute(originals, indices, workers)
    finally:
        if opened is not None:
            opened.close()
        _restore(steerer, originals)


@dataclass(frozen=True)
class BudgetPlan:
    """How a time budget is spent: the swarm that fits, from one setting's
    measured cost, and a sentence saying so."""

    pso: PsoConfig
    line: str


def plan_budget(
    plan: RunPlan, elapsed: float, setting_seconds: float, tail_seconds: float
) -> BudgetPlan:
    """The swarm that fits `plan.budget_seconds`, `elapsed` of it spent, when a
    setting costs `setting_seconds` and the confirmation and held-out check
    `tail_seconds`: all its particles for as many iterations as fit, or (when
    not one iteration fits) as many particles as do, once.

    Raises InvalidInputError when not one setting fits, saying how many
    minutes the smallest run needs (the documents are not cut: with fewer,
    the confirmation could confirm only a larger gain)."""
    budget = plan.budget_seconds
    fits = int((budget - elapsed - tail_seconds) // max(setting_seconds, 1e-9))
    if fits < 1:
        needed = (elapsed + tail_seconds + plan.pso.particles * setting_seconds) / 60.0
        raise InvalidInputError(
            f"The time budget of {budget / 60:g} minutes leaves no time to score a setting: "
            f"preparing and the baseline took {elapsed:.0f} s, a setting costs about "
            f"{setting_seconds:.0f} s and the confirmation and held-out check about "
            f"{tail_seconds:.0f} s. Allow about {needed:.0f} minutes for one round of "
            f"{plan.pso.particles} settings, or lower the document limit."
        )
    particles = min(plan.pso.particles, fits)
    iterations = max(1, min(fits // particles, 10_000))
    pso = dataclasses.replace(plan.pso, particles=particles, iterations=iterations)
    line = (
        f"Time budget {budget / 60:g} min: one setting costs about {setting_seconds:.1f} s, so "
        f"{particles} particles x {iterations} iterations fit (about "
        f"{(elapsed + tail_seconds + pso.evaluations * setting_seconds) / 60:.1f} min in all)."
    )
    return BudgetPlan(pso, line)


class _Run:
    """One run in progress: its counts, its best so far and its progress reports."""

    def __init__(
        self,
        steerer: Steerer,
        scorer: SettingScorer,
        plan: RunPlan,
        ranking: Objective,
        on_progress: Callable[[Progress], None] | None,
        cancel: threading.Event | None,
        journal: Journal | None,
        started: float,
    ) -> None:
        self.steerer, self.scorer, self.plan, self.ranking = steerer, scorer, plan, ranking
        self.on_progress, self.cancel = on_progress, cancel
        self.journal, self.started = journal, started
        self.total = plan.total
        self.pso = plan.pso
        self.budget_line = ""
        self.done = 0
        self.best: Evaluation | None = None
        self.baseline: Evaluation | None = None

    def report(self, latest: Evaluation | None, phase: str = "search") -> None:
        if self.on_progress is None or self.baseline is None:
            return
        with preserved_rng():
            self.on_progress(
                Progress(
                    done=self.done,
                    total=self.total,
                    best_score=None if self.best is None else self.best.score,
                    baseline=self.baseline.score,
                    latest=latest,
                    phase=phase,
                    best=self.best,
                    note=self.budget_line,
                )
            )

    def _score_baseline(self) -> tuple[Evaluation, tuple[float, ...]]:
        """The baseline on the search documents, with its per-document values;
        the search fitness is calibrated with it (optimize/guard/kl.py)."""
        kept = None if self.journal is None else self.journal.baseline
        fitness = self.plan.fitness
        if kept is None:
            t0 = time.perf_counter()
            metrics, values = document_scores(fitness, self.scorer.base)
            baseline = Evaluation.scored(-1, -1, Setting((), ()), metrics, time.perf_counter() - t0)
            if self.journal is not None:
                self.journal.record(BASELINE, baseline, values)
            kept = (baseline, values)
        calibrate = getattr(fitness, "calibrate", None)
        if calibrate is not None:
            calibrate(kept[0].metrics, kept[1])
        return kept

    def execute(
        self,
        originals: tuple[SteeringVector, ...],
        indices: tuple[int, ...],
        workers: BatchScoreFn | None,
    ) -> OptimizationResult:
        plan, scorer, ranking, steerer = self.plan, self.scorer, self.ranking, self.steerer
        baseline, values = self._score_baseline()
        self.baseline = baseline
        calibrate = getattr(workers, "calibrate", None)  # Ray workers score like the driver
        if calibrate is not None:
            calibrate(baseline.metrics, values)
        if plan.budget_seconds > 0:
            self._plan_budget(baseline)
        self.done = 1
        self.report(baseline)

        # On an accelerator, a fitness that scores several settings at once gets
        # each iteration's settings together (one batched pass). On a CPU the
        # batched pass measured ~20 % more CPU than one at a time (the prefix
        # store already spares each setting the layers below it; docs/performance.md).
        many = getattr(plan.fitness, "metrics_many", None) if steerer.device.type != "cpu" else None
        local = one_by_one(scorer) if many is None else batched_evaluator(many, scorer.vectors_of)

        def on_evaluation(evaluation: Evaluation, phase: str = "search") -> None:
            if self.journal is not None and phase == "search":
                self.journal.record(SEARCH_ENTRY, evaluation)
            self.done += 1
            if phase == "search" and ranking.better(
                evaluation.metrics, None if self.best is None else self.best.metrics
            ):
                self.best = evaluation
            self.report(evaluation, phase)

        outcome = run_search(
            plan.space,
            len(scorer.records),
            self.pso,
            local if workers is None else workers,
            ranking,
            strategy=plan.strategy,
            cancel=self.cancel,
            on_evaluation=on_evaluation,
            earlier=None if self.journal is None else self.journal.search,
            convert=partial(scorer.to_alphas, plan.space),
        )
        if not outcome.history:
            raise OptimizationCancelled(
                "The optimization was cancelled before any steering setting was scored."
            )
        history, cancelled = outcome.history, outcome.cancelled
        found = ranking.best(history)
        held = 0 if plan.heldout is None else 2
        confirmation = None
        if plan.confirm is not None and not cancelled and plan.scores_task:
            finals = pick_finalists(history, ranking, baseline, plan.finalists)
            self.total = self.done + (1 + len(finals) if finals else 0) + held
            if finals:
                confirm_scorer = SettingScorer(steerer, originals, indices, plan.confirm)
                confirmation = confirm_finalists(
                    confirm_scorer, finals, self.pso.iterations, plan.significance,
                    self.cancel, self.journal, on_evaluation,
                )
                cancelled = confirmation is None
        loops = [] if cancelled else self._check_fluency(baseline, found, confirmation)

        def verdict_now() -> Verdict:
            return decide(
                ranking, baseline, found, confirmation=confirmation, loops=loops,
                cancelled=cancelled, scores_task=plan.scores_task,
                significance=plan.significance,
            )

        heldout_scores = None
        if plan.heldout is not None and not cancelled:
            chosen = verdict_now().candidate or found
            self.total = self.done + 2
            heldout_scores = self._score_heldout(plan.heldout, [baseline, chosen])
            cancelled = heldout_scores is None
        return OptimizationResult(
            baseline=baseline,
            best=found,
            history=[baseline, *history],
            vector_indices=tuple(r.index for r in scorer.records),
            vectors=scorer.records,
            seed=plan.pso.seed,
            fitness=plan.fitness.config,
            space=plan.space,
            pso=self.pso,
            model=steerer.info.name,
            num_layers=steerer.info.num_layers,
            metric=plan.fitness.metric_key,
            higher_is_better=plan.fitness.higher_is_better,
            samples=plan.fitness.samples,
            cancelled=cancelled,
            wall_seconds=time.perf_counter() - self.started,
            heldout=heldout_scores,
            objective=ranking.name,
            strategy=plan.strategy,
            objective_options=ranking.options,
            split=getattr(plan.fitness, "split", None),
            confirmation=confirmation,
            loops=tuple((e.setting, reason) for e, reason in loops),
            significance=plan.significance,
            finalists=plan.finalists,
            scores_task=plan.scores_task,
            planned=self.total,
            documents=str(getattr(plan.fitness, "documents", "")),
            confirm_planned=plan.confirm is not None,
        )

    def _plan_budget(self, baseline: Evaluation) -> None:
        """Fit the swarm into the time budget from the baseline's measured cost
        (journaled, so a resumed run keeps the same swarm)."""
        plan = self.plan
        kept = None if self.journal is None else self.journal.budget
        if kept is None:
            search = max(1, int(plan.fitness.samples))
            per_document = baseline.seconds / search
            setting = baseline.seconds + float(getattr(plan.fitness, "extra_seconds", 0.0))
            confirm = 0 if plan.confirm is None else (1 + plan.finalists) * plan.confirm.samples
            held = 0 if plan.heldout is None else 2 * plan.heldout.samples
            tail = per_document * (confirm + held)
            elapsed = time.perf_counter() - self.started
            try:
                budget = plan_budget(plan, elapsed, setting, tail)
            except InvalidInputError:
                # a refusal, not an interruption: nothing is left to resume
                if self.journal is not None:
                    self.journal.close(finished=True)
                raise
            kept = (budget.pso.particles, budget.pso.iterations, budget.line)
            if self.journal is not None:
                self.journal.record_budget(*kept)
        particles, iterations, self.budget_line = kept
        self.pso = dataclasses.replace(plan.pso, particles=particles, iterations=iterations)
        self.total = plan.total - plan.pso.evaluations + self.pso.evaluations

    def _check_fluency(
        self, baseline: Evaluation, found: Evaluation, confirmation: Confirmation | None
    ) -> list[tuple[Evaluation, str]]:
        """The settings the verdict would recommend, checked in turn until one
        does not loop (or none is left): those that loop, with the reason."""
        check = self.plan.fluency
        if check is None:
            return []
        loops: list[tuple[Evaluation, str]] = []
        while True:
            verdict = decide(
                self.ranking, baseline, found, confirmation=confirmation,
                loops=loops, scores_task=self.plan.scores_task,
            )
            chosen = verdict.recommended
            if chosen is None:
                return loops
            with preserved_rng():
                looping, reason = check(self.scorer.vectors_of(chosen.setting))
            if not looping:
                return loops
            loops.append((chosen, reason))

    def _score_heldout(
        self, heldout: Fitness, templates: Sequence[Evaluation]
    ) -> HeldOutScores | None:
        """The baseline and the chosen setting scored on `heldout`; None when
        cancelled before the end. Each is journaled, and reused from the journal."""
        scored: list[Evaluation] = []
        per_document: list[tuple[float, ...]] = []
        for template in templates:
            if self.cancel is not None and self.cancel.is_set():
                return None
            kept = None if self.journal is None else self.journal.heldout.get(template.setting.key)
            if kept is None:
                t0 = time.perf_counter()
                metrics, values = document_scores(
                    heldout, self.scorer.vectors_of(template.setting)
                )
                evaluation = Evaluation.scored(
                    template.iteration, template.particle, template.setting, metrics,
                    time.perf_counter() - t0,
                )
                if self.journal is not None:
                    self.journal.record(HELDOUT_ENTRY, evaluation, values)
                kept = (evaluation, values)
            scored.append(kept[0])
            per_document.append(kept[1])
            self.done += 1
            self.report(None, "heldout")

        paired: PairedTest | None = None
        if per_document[0] and per_document[1]:
            paired = paired_test(per_document[0], per_document[1], heldout.higher_is_better)
        return HeldOutScores(
            fitness=heldout.config,
            metric=heldout.metric_key,
            higher_is_better=heldout.higher_is_better,
            samples=heldout.samples,
            baseline=scored[0],
            best=scored[1],
            paired=paired,
            documents=str(getattr(heldout, "documents", "")),
        )


def apply_best(
    steerer: Steerer, result: OptimizationResult, evaluation: Evaluation | None = None
) -> tuple[SteeringVector, ...]:
    """Make a setting of the result the active vectors: `evaluation` (one of
    its search evaluations, e.g. a point of its Pareto front; default: the
    verdict's recommendation). Each optimized vector is recaptured at that
    layer with that alpha; the others are kept.

    Raises:
        IncompatibleVectorError: the result was made on another model.
        InvalidInputError: nothing is recommended (and no `evaluation` was
            given), the active vectors are no longer the ones optimized, or
            `evaluation` is not a search evaluation of this result.
    """
    info = steerer.info
    if info.name != result.model or info.num_layers != result.num_layers:
        raise IncompatibleVectorError(
            f"This result was found on {result.model} ({result.num_layers} layers); "
            f"the loaded model is {info.name} ({info.num_layers} layers)."
        )
    if evaluation is None:
        verdict = result.verdict
        if verdict.recommended is None:
            raise InvalidInputError(verdict.headline)
        chosen = verdict.recommended.setting
    else:
        scored = {(e.iteration, e.particle): e.setting.key for e in result.evaluations}
        if (
            evaluation.is_baseline
            or scored.get((evaluation.iteration, evaluation.particle)) != evaluation.setting.key
        ):
            raise InvalidInputError(
                "That setting is not one this optimization scored; run it again or pick "
                "a point of its front."
            )
        chosen = evaluation.setting
    placer = Placer(steerer, steerer.vectors)
    tuned = result.tuned_setting(chosen)
    for item in tuned:
        position_of(placer.vectors, item.vector)  # all found before any recapture
    vectors = placer.place(tuned)
    steerer.set_vectors(vectors)
    return tuple(vectors)
