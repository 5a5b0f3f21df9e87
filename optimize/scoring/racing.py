"""Scoring a setting's search documents in two parts, and stopping after the
first when the setting is clearly below the settings it would have to beat.

A search tries many settings that break the task (too strong, the wrong
layer) or that are plainly worse than what it already found; scoring every
document of each costs as much as scoring a good one. `RacingFitness` scores
the first part of the search documents and compares the setting, document
by document, with the current reference on exactly those documents: the
baseline until `finalists` settings that could be recommended were scored
whole (`admit`), then the worst of those finalists-so-far (a setting below it
cannot become a finalist). It scores the rest only when the setting is not
clearly worse: its mean difference plus DROP_Z standard errors is still at
or above 0. A dropped setting reports its first part's score, marked with
the documents it was scored on (`PARTIAL`); the KL guard measures no KL for
it (optimize/guard/kl.py), so it is neither a finalist nor on the front.

Only a score that is the mean of per-document values can be built from two
parts (`LmEvalFitness.per_document_mean`); the run's assembly uses a racing
fitness only then. Before `calibrate` is given the baseline's values it
scores every setting whole (the baseline itself, first).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from optimize.scoring.fitness import FitnessOutcome, LmEvalFitness
from optimize.scoring.metrics import PARTIAL, Metrics
from steering.vector import SteeringVector

# A setting is dropped when its mean difference from the reference on the
# first part plus this many standard errors is below 0 (about a one-sided 2 %
# test): clearly worse, not merely a little behind.
DROP_Z = 2.0
# The share of the search documents scored before deciding.
FIRST_PART = 0.5


class RacingFitness:
    """The search documents of `head` then `tail` (two parts of one side of
    one split), combined into one score; see the module docstring."""

    def __init__(self, head: LmEvalFitness, tail: LmEvalFitness, finalists: int = 3) -> None:
        self.head, self.tail = head, tail
        self.finalists = max(1, int(finalists))
        self.config = head.config
        self.samples = head.samples + tail.samples
        self.higher_is_better = head.higher_is_better
        self.split = head.split
        self.side = head.side
        self.documents = head.documents.replace(
            f"the {head.samples} ", f"the {self.samples} ", 1
        )
        self._baseline: np.ndarray | None = None
        self._leaders: list[tuple[float, np.ndarray]] = []  # best first
        self.dropped = 0  # settings stopped after the first part

    @property
    def metric_key(self) -> str:
        return self.head.metric_key

    def _sign(self) -> float:
        return 1.0 if self.higher_is_better else -1.0

    def calibrate(self, baseline: Sequence[float]) -> None:
        """Race later settings against `baseline`'s per-document values (all
        search documents, in order; its first part is what a setting races)."""
        self._baseline = np.asarray(baseline[: self.head.samples], dtype=float)

    def admit(self, score: float, values: Sequence[float]) -> None:
        """A setting scored whole that could be a finalist (within the limits,
        above the baseline): the reference becomes the worst of the best
        `finalists` of these once there are that many."""
        head = np.asarray(values[: self.head.samples], dtype=float)
        self._leaders.append((score, head))
        self._leaders.sort(key=lambda item: -self._sign() * item[0])
        del self._leaders[self.finalists :]

    @property
    def reference(self) -> np.ndarray | None:
        """The first-part values a setting must not fall clearly below."""
        if len(self._leaders) >= self.finalists:
            return self._leaders[-1][1]
        return self._baseline

    def clearly_worse(self, values: Sequence[float]) -> bool:
        """Whether first-part `values` are clearly below the reference's."""
        reference = self.reference
        if reference is None or len(values) != len(reference) or len(values) < 2:
            return False
        diffs = self._sign() * (np.asarray(values, dtype=float) - reference)
        mean = float(diffs.mean())
        stderr = float(diffs.std(ddof=1)) / math.sqrt(len(diffs))
        return mean < 0 and mean + DROP_Z * stderr < 0

    def _combine(
        self, head: FitnessOutcome, tail: FitnessOutcome | None
    ) -> tuple[Metrics, tuple[float, ...]]:
        if tail is None:
            values = head.per_document
            self.dropped += 1
            return Metrics({**head.metrics, PARTIAL: float(len(values))}), values
        values = head.per_document + tail.per_document
        score = float(np.mean(values))
        stderr = (
            float(np.std(values, ddof=1)) / math.sqrt(len(values)) if len(values) > 1 else math.nan
        )
        return Metrics.of_target(score, stderr), values

    def document_scores(
        self, vectors: Sequence[SteeringVector]
    ) -> tuple[Metrics, tuple[float, ...]]:
        """The metrics and per-document values (of the documents scored)."""
        head = self.head.evaluate(vectors)
        tail = None if self.clearly_worse(head.per_document) else self.tail.evaluate(vectors)
        return self._combine(head, tail)

    def metrics(self, vectors: Sequence[SteeringVector]) -> Metrics:
        return self.document_scores(vectors)[0]

    def document_scores_many(
        self, settings: Sequence[Sequence[SteeringVector]]
    ) -> list[tuple[Metrics, tuple[float, ...]]]:
        """`document_scores` of several settings: the first parts in shared
        passes, then the rest of those not dropped, in shared passes."""
        heads = self.head.outcomes_many(settings)
        going = [i for i, head in enumerate(heads) if not self.clearly_worse(head.per_document)]
        tails = dict(zip(going, self.tail.outcomes_many([settings[i] for i in going]), strict=True))
        return [self._combine(head, tails.get(i)) for i, head in enumerate(heads)]

    def metrics_many(self, settings: Sequence[Sequence[SteeringVector]]) -> list[Metrics]:
        return [metrics for metrics, _ in self.document_scores_many(settings)]
