"""A first round on fewer documents (issue 13): the search scores every
setting on the first few documents of the task only, then its best few
distinct settings, the finalists, are scored on all of them and the best
finalist is recommended.

Why: a setting's cost is its documents' tokens, so a search on a quarter of
them does about a quarter of the model work; the finalists, scored on every
document, keep the recommendation honest (one lucky setting on a few
documents does not win unless it holds on all of them). Measured on the demo
(`python -m bench screening`, docs/performance.md): about 3x less model work,
and picks that score as well on held-out documents.

The run's result keeps the two apart: its history (the baseline and the
finalists) holds only scores on all documents, so the best, the front and
the convergence compare like with like; the first round's evaluations, on
fewer documents, are kept beside it (`FirstRound`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from steering.rng import preserved_rng
from optimize.scoring.evaluation import Evaluation
from optimize.run.results import FirstRound
from optimize.run.journal import FINAL
from optimize.guard.objective import Objective

if TYPE_CHECKING:
    from optimize.run.journal import Journal
    from optimize.scoring.placing import SettingScorer

FINALISTS = 3  # how many of the first round's best settings are scored on every document
# `Progress.phase` while the first round searches, and while its finalists are scored.
FIRST_ROUND, FINALISTS_PHASE = "first_round", "finalists"


def pick_finalists(
    evaluations: Iterable[Evaluation], ranking: Objective, count: int = FINALISTS
) -> list[Evaluation]:
    """The `count` best distinct settings of `evaluations` by `ranking`, best
    first (on a tie the earlier evaluation ranks first, as `Objective.best`)."""
    ranked: list[Evaluation] = []
    for evaluation in evaluations:
        if any(e.setting.key == evaluation.setting.key for e in ranked):
            continue
        at = len(ranked)
        while at > 0 and ranking.better(evaluation.metrics, ranked[at - 1].metrics):
            at -= 1
        ranked.insert(at, evaluation)
    return ranked[:count]


def score_finalists(
    scorer: SettingScorer,
    finals: Sequence[Evaluation],
    iteration: int,
    cancel: threading.Event | None,
    journal: Journal | None,
    on_evaluation: Callable[[Evaluation, str], None],
    phase: str,
) -> list[Evaluation]:
    """`finals` scored by `scorer` (every document), as evaluations of one
    more iteration, particle = rank; each journaled (FINAL) and reused from
    the `journal`. Stops early, with what it has, when cancelled."""
    scored: list[Evaluation] = []
    for rank, template in enumerate(finals):
        if cancel is not None and cancel.is_set():
            break
        kept = None if journal is None else journal.final.get(template.setting.key)
        if kept is None:
            t0 = time.perf_counter()
            with preserved_rng():
                metrics = scorer(template.setting)
            kept = Evaluation.scored(
                iteration, rank, template.setting, metrics, time.perf_counter() - t0
            )
            if journal is not None:
                journal.record(FINAL, kept)
        scored.append(kept)
        with preserved_rng():
            on_evaluation(kept, phase)
    return scored


def check_first_round(items: int, limit: int | None, scores_task: bool = True) -> int:
    """The first round's documents (0: no first round) for a run scoring
    `limit` documents of a task (None: all); InvalidInputError unless fewer
    than those, and for a run that scores no task (concept strength)."""
    from optimize.config.table import BY_NAME
    from steering.errors import InvalidInputError

    items = BY_NAME["first_round"].check(items)
    if items and not scores_task:
        raise InvalidInputError(
            "A first round scores fewer documents of a task; concept strength scores the "
            "vector's own prompts: set the first round to 0."
        )
    if items and limit is not None and items >= limit:
        raise InvalidInputError(
            f"The first round must score fewer documents than the limit ({limit}), got {items}."
        )
    return items

