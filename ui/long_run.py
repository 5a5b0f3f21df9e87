"""Asking before a long optimization goes on (a form once accepted 10,000
iterations with no estimate).

How long a run takes depends on the task, the documents and the machine, so
no form check can know it. The run's first evaluation (the unsteered
baseline) is timed; when the evaluations left would take longer than
LONG_RUN_SECONDS, the run stops there and asks. It holds the model while it
asks (the page may have gone away and come back), so an unanswered question
cancels the run after LONG_RUN_ANSWER_SECONDS instead of holding the model
for ever.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from optimize.run.results import Progress
from steering.limits import LONG_RUN_ANSWER_SECONDS, LONG_RUN_SECONDS
from ui.jobs import duration


@dataclass(frozen=True)
class LongRunQuestion:
    """Emitted by a run that waits for the user's go-ahead: its estimate."""

    left_seconds: float
    done: int
    total: int

    def status(self) -> str:
        return (
            f"⏸ This run would take about {duration(self.left_seconds)} more "
            f"({self.total - self.done} evaluations left, timed from the first "
            f"{self.done}). It waits for you, holding the model: click **Optimize vectors** "
            "again to go on, or **Cancel** to stop it. Without an answer it is cancelled "
            f"after {duration(LONG_RUN_ANSWER_SECONDS)}."
        )


class LongRunGate:
    """One run's question: asked at most once, after its first evaluation.

    The job thread calls `check` after every evaluation; any page's thread
    calls `go_on` (the Optimize button clicked while the run waits)."""

    def __init__(
        self,
        threshold: float = LONG_RUN_SECONDS,
        answer_wait: float = LONG_RUN_ANSWER_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold = threshold
        self.answer_wait = answer_wait
        self._clock = clock
        self._answer = threading.Event()
        self._asking = threading.Event()

    @property
    def asking(self) -> bool:
        return self._asking.is_set()

    def go_on(self) -> bool:
        """Answer the question; False when the run is not asking."""
        if not self._asking.is_set():
            return False
        self._answer.set()
        return True

    def check(
        self, progress: Progress, left: float | None, emit: Callable[[Any], None],
        cancel: threading.Event,
    ) -> float:  # fmt: skip
        """After the evaluation `progress` reports, with `left` seconds
        estimated to go: when that is the first one and `left` is over the
        threshold, emit a LongRunQuestion and wait for `go_on` or `cancel`; no
        answer within `answer_wait` sets `cancel`. Returns the seconds it waited."""
        done, total = progress.done, progress.total
        if done != 1 or left is None or left <= self.threshold or done >= total:
            return 0.0
        self._asking.set()
        started = self._clock()
        try:
            emit(LongRunQuestion(left, done, total))
            deadline = started + self.answer_wait
            while not self._answer.is_set() and not cancel.is_set():
                if self._clock() >= deadline:
                    cancel.set()
                    break
                self._answer.wait(timeout=min(1.0, max(deadline - self._clock(), 0.0)))
        finally:
            self._asking.clear()
        return self._clock() - started


def go_ahead(running: Any) -> bool:
    """Answer the running optimization's question (a BackgroundJob whose work
    has a `gate`, or None); False when none runs or it is not asking."""
    return running is not None and running.work.gate.go_on()
