"""Asking before a long optimization goes on (a form once accepted 10,000
iterations with no estimate).

How long a run takes depends on the task, the documents and the machine, so
no form check can know it. The run's first evaluation (the unsteered
baseline) is timed; when the evaluations left would take longer than the
app's confirmation threshold, the run stops there and asks; above the
operator's limit it is refused. It holds the model while it asks (the page
may have gone away and come back), so an unanswered question cancels the run
after the answer wait instead of holding the model for ever. The go-ahead is
the **Go on** button: clicking **Optimize vectors** again (a double click, or
a second page) never answers it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from optimize.run.results import Progress
from steering.budget import WorkEstimate, duration
from steering.limits import LONG_RUN_ANSWER_SECONDS, LONG_RUN_SECONDS
from ui.jobs import ConfirmGate, JobLimits


@dataclass(frozen=True)
class LongRunQuestion:
    """Emitted by a run that waits for the user's go-ahead: its estimate."""

    left_seconds: float
    done: int
    total: int
    answer_seconds: float = LONG_RUN_ANSWER_SECONDS

    def status(self) -> str:
        return (
            f"⏸ This run would take about {duration(self.left_seconds)} more "
            f"({self.total - self.done} evaluations left, timed from the first "
            f"{self.done}). It waits for you, holding the model: click **Go on** to go on, "
            "or **Cancel** to stop it. Without an answer it is cancelled "
            f"after {duration(self.answer_seconds)}."
        )


class LongRunGate(ConfirmGate):
    """One run's question: asked at most once, after its first evaluation.

    The job thread calls `check` after every evaluation; any page's thread
    calls `go_on` (the **Go on** button) while the run waits."""

    def __init__(
        self,
        threshold: float = LONG_RUN_SECONDS,
        answer_wait: float = LONG_RUN_ANSWER_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        refuse: float | None = None,
    ) -> None:
        super().__init__(JobLimits(threshold, refuse, answer_wait), clock)

    @property
    def threshold(self) -> float:
        return self.limits.confirm_seconds

    @property
    def answer_wait(self) -> float:
        return self.limits.answer_seconds

    def check(
        self, progress: Progress, left: float | None, emit: Callable[[Any], None],
        cancel: threading.Event,
    ) -> float:
        """After the evaluation `progress` reports, with `left` seconds
        estimated to go: when that is the first one, JobRefused if `left` is
        over the operator's limit; when it is over the threshold, emit a
        LongRunQuestion and wait for `go_on` or `cancel` (no answer within
        `answer_wait` sets `cancel`). Returns the seconds it waited."""
        done, total = progress.done, progress.total
        if done != 1 or left is None or done >= total:
            return 0.0
        what = f"{total - done} evaluations left, timed from the first {done}"
        self.refuse_over_limit("This run", WorkEstimate(left, what))
        question = LongRunQuestion(left, done, total, self.answer_wait)
        return self.ask(question, left, emit, cancel)
