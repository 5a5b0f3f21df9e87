"""Running model work under the model lock, off the Gradio worker thread.

A Gradio generator handler may resume on a different thread after each
`yield`, and may be abandoned when the browser goes away. So the handler
never holds the lock itself: a job thread acquires it, does the work, always
releases it, and passes what it produces back through a queue. The handler
only reads the queue and turns items into UI updates.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from steering import validate
from steering.budget import WorkEstimate, duration
from steering.errors import JobRefused
from steering.limits import LONG_RUN_ANSWER_SECONDS, LONG_RUN_SECONDS, count
from steering.progress import JobControl
from ui import format as fmt

log = logging.getLogger(__name__)

WAITING = "waiting"
ITEM = "item"
_DONE = "done"
_ERROR = "error"

Emit = Callable[[Any], None]


class ModelJob:
    """`work(emit)` run in its own thread while holding `lock`.

    Iterate `events()` to get (WAITING, None) once if the lock is busy, then
    (ITEM, x) for each `emit(x)`; afterwards `result` holds what `work`
    returned. An exception raised by `work` is raised again from `events()`.
    """

    def __init__(self, lock: AbstractContextManager[Any], work: Callable[[Emit], Any]) -> None:
        self._lock = lock
        self._work = work
        self._queue: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.result: Any = None

    def _run(self) -> None:
        try:
            acquire = getattr(self._lock, "acquire", None)
            if acquire is not None and not acquire(blocking=False):
                self._queue.put((WAITING, None))
                acquire()
            elif acquire is None:
                self._lock.__enter__()
            try:
                outcome = self._work(self._emit)
            finally:
                release = getattr(self._lock, "release", None)
                if release is not None:
                    release()
                else:
                    self._lock.__exit__(None, None, None)
            self._queue.put((_DONE, outcome))
        except BaseException as exc:  # noqa: BLE001 - raised again in the caller's thread
            self._queue.put((_ERROR, exc))

    def _emit(self, item: Any) -> None:
        self._queue.put((ITEM, item))

    def events(self) -> Iterator[tuple[str, Any]]:
        thread = threading.Thread(target=self._run, name="steerswarm-model-job", daemon=True)
        thread.start()
        while True:
            kind, payload = self._queue.get()
            if kind in (_DONE, _ERROR):
                # its last act was to queue this: joined, so no job thread
                # outlives the handler that waited for it
                thread.join()
                if kind == _ERROR:
                    raise payload
                self.result = payload
                return
            yield kind, payload


class RunStatus:
    """How far a long model job (an optimization) has got, for the people it
    makes wait: the webui's chat and API replies queue behind it.

    The job thread reports `started(total)`, `advanced(done, total)` and
    `finished()`; any thread may read `waiting_note()`. The estimate is the
    mean time per evaluation so far times those left.
    """

    def __init__(self, clock: Callable[[], float] | None = None) -> None:
        self._clock = clock or time.monotonic
        self._lock = threading.Lock()
        self._since: float | None = None
        self._done = 0
        self._total = 0

    def started(self, total: int) -> None:
        with self._lock:
            self._since, self._done, self._total = self._clock(), 0, total

    def advanced(self, done: int, total: int) -> None:
        with self._lock:
            self._done, self._total = done, total

    def finished(self) -> None:
        with self._lock:
            self._since = None

    def paused(self, seconds: float) -> None:
        """The run waited `seconds` (for the user's go-ahead): not evaluation
        time, so it is left out of the estimate."""
        with self._lock:
            if self._since is not None:
                self._since += seconds

    def left_seconds(self) -> float | None:
        """Seconds the run may still take; None when none runs or before the
        first evaluation ends (nothing to estimate from)."""
        with self._lock:
            if self._since is None or self._done <= 0:
                return None
            per = (self._clock() - self._since) / self._done
            return per * max(self._total - self._done, 0)

    def waiting_note(self) -> str | None:
        """What a reply waiting for the run is told; None when none runs."""
        with self._lock:
            running, done, total = self._since is not None, self._done, self._total
        if not running:
            return None
        left = self.left_seconds()
        how_long = (
            f"about {duration(left)} left ({done} of {total} evaluations done)"
            if left is not None
            else f"it has just started ({total} evaluations)"
        )
        return (
            "Steering: an optimization is using the model, so this reply "
            f"waits until it ends: {how_long}. Cancel it under Steering → Optimize to "
            "reply sooner."
        )


@dataclass(frozen=True)
class JobLimits:
    """How long a job may run before it must be confirmed, and (set by the
    operator of a shared app) above which it is refused.

    `confirm_seconds`: a job estimated longer waits for **Go on** (a button
    of its own, never the one that started it). `refuse_seconds`: a job
    estimated longer is refused (None: no limit). `answer_seconds`: an
    unanswered question cancels the job after this long, so a page closed
    meanwhile leaves nothing waiting."""

    confirm_seconds: float = LONG_RUN_SECONDS
    refuse_seconds: float | None = None
    answer_seconds: float = LONG_RUN_ANSWER_SECONDS

    def __post_init__(self) -> None:
        confirm = validate.number("The confirmation threshold", self.confirm_seconds, 0)
        object.__setattr__(self, "confirm_seconds", confirm)
        object.__setattr__(
            self, "answer_seconds", validate.number("The answer wait", self.answer_seconds, 0)
        )
        if self.refuse_seconds is not None:
            object.__setattr__(
                self, "refuse_seconds", validate.number("The job limit", self.refuse_seconds, 0)
            )

    @classmethod
    def from_minutes(cls, confirm: float | None, refuse: float | None) -> JobLimits:
        """From an operator's minutes (a flag or a setting); None: the default."""
        return cls(
            confirm_seconds=LONG_RUN_SECONDS if confirm is None else 60.0 * float(confirm),
            refuse_seconds=None if refuse is None else 60.0 * float(refuse),
        )

    def describe(self) -> str:
        """The limits in words, for the status line of a refused job."""
        ask = f"jobs over {duration(self.confirm_seconds)} ask first"
        if self.refuse_seconds is None:
            return ask
        return f"{ask}; jobs over {duration(self.refuse_seconds)} are refused"


@dataclass(frozen=True)
class JobStarted:
    """Emitted when a job starts its model work: what it will do, how long."""

    title: str
    estimate: WorkEstimate

    def status(self) -> str:
        if not self.estimate.what:
            return f"⟳ {self.title}…"
        return f"⟳ {self.title}: {fmt.md(self.estimate.describe())}…"


@dataclass(frozen=True)
class JobQuestion:
    """Emitted by a job that waits for the go-ahead: its estimate."""

    title: str
    estimate: WorkEstimate
    answer_seconds: float

    def status(self) -> str:
        return (
            f"⏸ {self.title} would take about {duration(self.estimate.seconds)} "
            f"({fmt.md(self.estimate.what)}). It has not started and does not hold the model: "
            "click **Go on** to run it, or **Cancel**. Without an answer it is cancelled after "
            f"{duration(self.answer_seconds)}."
        )


@dataclass(frozen=True)
class JobProgress:
    """How far a job's model work has got: `done` of `total` `unit`, and the
    seconds left at the pace so far (None before there is a pace)."""

    title: str
    done: int
    total: int
    unit: str
    left_seconds: float | None = None

    def status(self) -> str:
        left = "" if self.left_seconds is None else f", about {duration(self.left_seconds)} left"
        return (
            f"⟳ {self.title}: {count(self.done)} of {count(self.total)} {fmt.md(self.unit)}"
            f"{left}. **Cancel** stops it within seconds."
        )


class ConfirmGate:
    """A job's question before long work: asked at most once per `ask`.

    The job thread calls `ask`; any page's thread calls `go_on` (the **Go
    on** button) while it asks. Its limits come from the app (JobRegistry)."""

    def __init__(
        self, limits: JobLimits | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limits = limits or JobLimits()
        self._clock = clock
        self._answer = threading.Event()
        self._asking = threading.Event()

    @property
    def asking(self) -> bool:
        return self._asking.is_set()

    def go_on(self) -> bool:
        """Answer the question; False when the job is not asking."""
        if not self._asking.is_set():
            return False
        self._answer.set()
        return True

    def refuse_over_limit(self, title: str, estimate: WorkEstimate) -> None:
        """JobRefused when the estimate is above the operator's limit."""
        limit = self.limits.refuse_seconds
        if limit is not None and estimate.seconds > limit:
            raise JobRefused(
                f"{title} would take about {duration(estimate.seconds)} ({estimate.what}); "
                f"this app refuses jobs estimated over {duration(limit)} (a limit its operator "
                "set). Ask for less work: fewer prompts, documents, layers or evaluations."
            )

    def ask(
        self, question: Any, seconds: float, emit: Emit, cancel: threading.Event
    ) -> float:
        """When `seconds` is over the confirmation threshold, emit `question`
        and wait for `go_on` or `cancel`; no answer within the answer wait sets
        `cancel`. Returns the seconds it waited."""
        if seconds <= self.limits.confirm_seconds:
            return 0.0
        self._answer.clear()
        self._asking.set()
        started = self._clock()
        try:
            emit(question)
            deadline = started + self.limits.answer_seconds
            while not self._answer.is_set() and not cancel.is_set():
                if self._clock() >= deadline:
                    cancel.set()
                    break
                self._answer.wait(timeout=min(1.0, max(deadline - self._clock(), 0.0)))
        finally:
            self._asking.clear()
        return self._clock() - started


# plan(current, control) -> the estimate of the work, made under the model lock.
Plan = Callable[[JobControl], WorkEstimate]
# work(emit, control) -> the job's result, run under the model lock.
Work = Callable[[Emit, JobControl], Any]


class BackgroundJob:
    """A long model job (a capture, a map, an optimization...) that belongs to
    the app, not to the browser tab that started it.

    With a `plan`, the job first estimates its work under the model lock,
    then, without the lock, refuses it above the operator's limit or asks
    for the go-ahead above the confirmation threshold (chat and vector
    changes go on meanwhile), then runs `work(emit, control)` under the lock.
    It goes on when the page that started it is closed or reloaded; every
    emitted item is kept, so any page can `follow()` it from the start.
    `control` carries the job's own cancel event and reports progress
    (JobProgress items)."""

    def __init__(
        self,
        lock: AbstractContextManager[Any],
        work: Work,
        *,
        title: str = "An optimization",
        kind: str = "optimize",
        plan: Plan | None = None,
        gate: ConfirmGate | None = None,
        note: Callable[[], str | None] | None = None,
    ) -> None:
        self.work = work
        self.title = title
        self.kind = kind
        self.plan = plan
        self.gate = gate or ConfirmGate()
        self._note = note
        self.cancel_event = threading.Event()
        self.control = JobControl(self.cancel_event, self._progressed)
        self._lock = lock
        self._started = time.monotonic()
        self._changed = threading.Condition()
        self._events: list[tuple[str, Any]] = []
        self._finished = False
        self._pace: tuple[str, float, int] | None = None  # unit, since, done then
        self.progress: JobProgress | None = None
        self.result: Any = None
        self.error: BaseException | None = None

    def age(self) -> float:
        """Seconds since the job was made."""
        return time.monotonic() - self._started

    def start(self) -> None:
        threading.Thread(target=self._run, name="steerswarm-background-job", daemon=True).start()

    def _emit(self, item: Any) -> None:
        self._push((ITEM, item))

    def _push(self, event: tuple[str, Any]) -> None:
        with self._changed:
            self._events.append(event)
            self._changed.notify_all()

    def _progressed(self, done: int, total: int, unit: str) -> None:
        now = time.monotonic()
        if self._pace is None or self._pace[0] != unit or done < self._pace[2]:
            self._pace = (unit, now, done)
        _unit, since, first = self._pace
        left = None if done <= first else (now - since) / (done - first) * max(total - done, 0)
        self.progress = JobProgress(self.title, done, total, unit, left)
        self._emit(self.progress)

    def _locked(self) -> AbstractContextManager[Any]:
        return _Holding(self._lock, self._push)

    def _run(self) -> None:
        try:
            if self.plan is not None:
                with self._locked():
                    estimate = self.plan(self.control)
                self.gate.refuse_over_limit(self.title, estimate)
                question = JobQuestion(self.title, estimate, self.gate.limits.answer_seconds)
                self.gate.ask(question, estimate.seconds, self._emit, self.cancel_event)
                self.control.check(self.title)  # cancelled (or unanswered) while it asked
                self._emit(JobStarted(self.title, estimate))
            with self._locked():
                self.control.check(self.title)
                self.result = self.work(self._emit, self.control)
        except BaseException as exc:  # noqa: BLE001 - handed to every follower
            self.error = exc
        with self._changed:
            self._finished = True
            self._changed.notify_all()

    @property
    def running(self) -> bool:
        return not self._finished

    def cancel(self) -> None:
        """Ask the work to stop (it checks between batches and evaluations)."""
        self.cancel_event.set()

    def waiting_note(self) -> str | None:
        """What a chat reply waiting for this job is told (None: it ended)."""
        if not self.running:
            return None
        if self._note is not None:
            return self._note()
        progress = self.progress
        how_far = (
            "" if progress is None else f" ({progress.done} of {progress.total} {progress.unit})"
        )
        return (
            f"Steering: {self.title.lower()} is using the model{how_far}, so this reply waits "
            "until it ends. Any tab's **Cancel** stops it."
        )

    def follow(self) -> Iterator[tuple[str, Any]]:
        """Every event from the first, then each new one as it comes:
        (WAITING, None) while the model lock is busy, (ITEM, x) per emitted
        item; afterwards `result` is set, or the job's error is raised.
        Abandoning the iterator leaves the job running."""
        seen = 0
        while True:
            with self._changed:
                while seen == len(self._events) and not self._finished:
                    self._changed.wait(timeout=1.0)
                fresh = self._events[seen:]
                finished = self._finished
            seen += len(fresh)
            yield from fresh
            if finished and seen == len(self._events):
                if self.error is not None:
                    raise self.error
                return


class _Holding:
    """The model lock held for a block of a job's thread; (WAITING, None) is
    pushed first when it is busy."""

    def __init__(
        self, lock: AbstractContextManager[Any], push: Callable[[tuple[str, Any]], None]
    ) -> None:
        self.lock, self.push = lock, push

    def __enter__(self) -> None:
        acquire = getattr(self.lock, "acquire", None)
        if acquire is None:
            self.lock.__enter__()
        elif not acquire(blocking=False):
            self.push((WAITING, None))
            acquire()

    def __exit__(self, *exc: object) -> None:
        release = getattr(self.lock, "release", None)
        if release is not None:
            release()
        else:
            self.lock.__exit__(None, None, None)


class JobRegistry:
    """The app's long jobs: at most one running, and the latest one kept so a
    page opened later still sees its result. One registry per app (made with
    the tabs), so every page of that app, and every tab, shares it: any
    page's **Cancel** stops the running job, whichever tab started it."""

    def __init__(self, limits: JobLimits | None = None) -> None:
        self.limits = limits or JobLimits()
        self._lock = threading.Lock()
        self._latest: BackgroundJob | None = None
        # the latest job of each kind: a page reloaded after an optimization's
        # result was applied (an apply job) still shows that result
        self._latest_by_kind: dict[str, BackgroundJob] = {}

    def start(self, job: BackgroundJob) -> bool:
        """Start `job` unless another is running; returns whether it started."""
        with self._lock:
            if self._latest is not None and self._latest.running:
                return False
            self._latest = self._latest_by_kind[job.kind] = job
        job.start()
        return True

    def gate(self) -> ConfirmGate:
        """A new job's gate, with this app's limits."""
        return ConfirmGate(self.limits)

    @property
    def latest(self) -> BackgroundJob | None:
        return self._latest

    def latest_of(self, kind: str) -> BackgroundJob | None:
        """The latest job of `kind` started, whatever ran after it."""
        return self._latest_by_kind.get(kind)

    @property
    def running(self) -> BackgroundJob | None:
        job = self._latest
        return job if job is not None and job.running else None

    def cancel(self) -> str:
        """Cancel the running job, whichever page or tab started it."""
        job = self.running
        if job is None:
            return "Nothing to cancel: no job is running."
        job.cancel()
        return f"✕ Cancelling {job.title.lower()}: it stops within seconds…"

    def go_on(self) -> str:
        """Give the running job the go-ahead it waits for."""
        job = self.running
        if job is None or not job.gate.go_on():
            return "Nothing waits for a go-ahead."
        return f"▶ Going on: {job.title.lower()} runs now."

    def waiting_note(self) -> str | None:
        """What a chat reply that waits for the running job is told, or None."""
        job = self.running
        return None if job is None else job.waiting_note()

    def busy_line(self) -> str | None:
        """One line for a page that loads while a job runs (None: none runs)."""
        job = self.running
        if job is None:
            return None
        if job.gate.asking:
            return f"⏸ {job.title} waits for a go-ahead (**Go on**) or **Cancel**."
        progress = job.progress
        return (
            progress.status()
            if progress is not None
            else f"⟳ {job.title} is using the model. **Cancel** stops it."
        )
