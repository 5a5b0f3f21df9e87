"""Confirming the search's best settings on documents that did not rank them.

The search ranks every setting it tries on the search documents, so its best
score is the maximum of many noisy scores of the same documents: biased
upward. The best few distinct settings that beat the baseline there (the
finalists) are scored again, with the baseline, on the confirmation
documents, and each is compared with the baseline document by document
(`optimize.guard.split.paired_test`). The verdict (optimize/guard/verdict.py)
recommends only a finalist whose gain there passes a one-sided test, with
Holm's step-down over the finalists at the run's significance.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence

from optimize.config.space import Setting
from optimize.guard.objective import Objective
from optimize.guard.split import paired_test
from optimize.guard.verdict import Confirmation, beats_baseline
from optimize.run.journal import CONFIRM, Journal
from optimize.scoring.evaluation import Evaluation
from optimize.scoring.metrics import Metrics
from optimize.scoring.placing import SettingScorer, document_scores
from steering.rng import preserved_rng

# `Progress.phase` while the finalists are confirmed.
CONFIRMING = "confirm"


def pick_finalists(
    evaluations: Iterable[Evaluation], ranking: Objective, baseline: Evaluation, count: int
) -> list[Evaluation]:
    """The `count` best distinct settings of `evaluations` by `ranking` that
    beat the baseline within the limits (`beats_baseline`), best first (on a
    tie the earlier evaluation ranks first, as `Objective.best`)."""
    ranked: list[Evaluation] = []
    for evaluation in evaluations:
        if not beats_baseline(ranking, evaluation, baseline):
            continue
        if any(e.setting.key == evaluation.setting.key for e in ranked):
            continue
        at = len(ranked)
        while at > 0 and ranking.better(evaluation.metrics, ranked[at - 1].metrics):
            at -= 1
        ranked.insert(at, evaluation)
    return ranked[:count]


def confirm_finalists(
    scorer: SettingScorer,
    finals: Sequence[Evaluation],
    iteration: int,
    significance: float,
    cancel: threading.Event | None,
    journal: Journal | None,
    on_evaluation: Callable[[Evaluation, str], None],
) -> Confirmation | None:
    """The baseline and `finals` scored by `scorer` (the confirmation
    documents), each journaled and reused from the `journal`; None when
    cancelled before the end. A finalist's evaluation keeps its search
    metrics (the KL, the guard task) with the confirmation score as its
    target; it is numbered as one more iteration, particle = its rank."""
    scored: list[tuple[Evaluation, tuple[float, ...]]] = []
    templates = [Evaluation.scored(-1, -1, Setting((), ()), Metrics(), 0.0), *finals]
    for rank, template in enumerate(templates):
        if cancel is not None and cancel.is_set():
            return None
        key = template.setting.key
        kept = None if journal is None else journal.confirm.get(key)
        if kept is None:
            started = time.perf_counter()
            with preserved_rng():
                if template.is_baseline:
                    metrics, values = document_scores(scorer.fitness, scorer.base)
                else:
                    metrics, values = scorer.document_scores(template.setting)
            merged = Metrics({**template.metrics, **metrics})
            where = (-1, -1) if template.is_baseline else (iteration, rank - 1)
            evaluation = Evaluation.scored(
                *where, template.setting, merged, time.perf_counter() - started
            )
            kept = (evaluation, values)
            if journal is not None:
                journal.record(CONFIRM, evaluation, values)
        scored.append(kept)
        with preserved_rng():
            on_evaluation(kept[0], CONFIRMING)
    (baseline, base_values), finalists = scored[0], scored[1:]
    higher = scorer.fitness.higher_is_better
    return Confirmation(
        samples=scorer.fitness.samples,
        documents=str(getattr(scorer.fitness, "documents", "")),
        baseline=baseline,
        finalists=tuple(e for e, _ in finalists),
        tests=tuple(paired_test(base_values, values, higher) for _, values in finalists),
        level=significance,
    )
