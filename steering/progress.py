"""How whoever runs long model work stops it and hears how far it got.

A `JobControl` is handed to the Steerer for the length of one job
(`Steerer.controlled`): every forward pass the Steerer makes inside (a
capture, a task vector's answers, a layer norm calibration, a direction
rebuilt at another layer deep inside an optimization) checks its cancel event
between batches and between layers, and reports its progress. One object
reaches every pass, so no function between the job and the forward needs a
cancel argument of its own.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from steering.errors import JobCancelled

# on_progress(done, total, unit): `unit` says what is counted ("prompts",
# "answers", "rows"), for people.
ProgressReport = Callable[[int, int, str], None]


def _no_report(_done: int, _total: int, _unit: str) -> None:
    """The report of a job nobody watches."""


@dataclass(frozen=True)
class JobControl:
    """A job's own cancel event and where its progress goes.

    Each job has its own event: a cancel meant for one job never reaches the
    next (a shared event cleared by the next job lost the cancel)."""

    cancel: threading.Event = field(default_factory=threading.Event)
    on_progress: ProgressReport = _no_report

    @property
    def cancelled(self) -> bool:
        return self.cancel.is_set()

    def check(self, what: str = "The job") -> None:
        """Raise JobCancelled when the job was cancelled."""
        if self.cancel.is_set():
            raise JobCancelled(f"{what} was cancelled; nothing was changed.")

    def report(self, done: int, total: int, unit: str) -> None:
        self.on_progress(done, total, unit)

    def reporter(self, unit: str) -> Callable[[int, int], None]:
        """A (done, total) callback that reports in `unit`."""
        return _Reporter(self, unit)


class _Reporter:
    """`control.report(done, total, unit)` with the unit fixed (a class, not a
    closure: it is made once per capture)."""

    __slots__ = ("control", "unit")

    def __init__(self, control: JobControl, unit: str) -> None:
        self.control, self.unit = control, unit

    def __call__(self, done: int, total: int) -> None:
        self.control.report(done, total, self.unit)
