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
from typing import Any

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


def duration(seconds: float) -> str:
    """"45 s", "12 min", "3.5 h": the scale a person reads an estimate in."""
    if seconds < 90:
        return f"{max(seconds, 1):.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


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


class BackgroundJob:
    """A long model job (an optimization) that belongs to the app, not to the
    browser tab that started it.

    `work(emit, cancel)` runs in its own thread under `lock`; it goes on when
    the page that started it is closed or reloaded. Every emitted item is
    kept, so any page can `follow()` it from the start: a reloaded page
    replays the progress so far, then sees the rest live, then the result.
    """

    def __init__(
        self, lock: AbstractContextManager[Any], work: Callable[[Emit, threading.Event], Any]
    ) -> None:
        self.work = work
        self.cancel_event = threading.Event()
        self._started = time.monotonic()
        self._job = ModelJob(lock, self._call)
        self._changed = threading.Condition()
        self._events: list[tuple[str, Any]] = []
        self._finished = False
        self.result: Any = None
        self.error: BaseException | None = None

    def _call(self, emit: Emit) -> Any:
        return self.work(emit, self.cancel_event)

    def age(self) -> float:
        """Seconds since the job was made."""
        return time.monotonic() - self._started

    def start(self) -> None:
        threading.Thread(target=self._drain, name="steerswarm-background-job", daemon=True).start()

    def _drain(self) -> None:
        try:
            for event in self._job.events():
                with self._changed:
                    self._events.append(event)
                    self._changed.notify_all()
            self.result = self._job.result
        except BaseException as exc:  # noqa: BLE001 - handed to every follower
            self.error = exc
        with self._changed:
            self._finished = True
            self._changed.notify_all()

    @property
    def running(self) -> bool:
        return not self._finished

    def cancel(self) -> None:
        """Ask the work to stop (it checks between evaluations)."""
        self.cancel_event.set()

    def follow(self) -> Iterator[tuple[str, Any]]:
        """Every event from the first, then each new one as it comes, like
        `ModelJob.events()`; afterwards `result` is set, or the job's error is
        raised. Abandoning the iterator leaves the job running."""
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


class JobRegistry:
    """The app's long jobs: at most one running, and the latest one kept so a
    page opened later still sees its result. One registry per app (made with
    the tabs), so every page of that app shares it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latest: BackgroundJob | None = None

    def start(self, job: BackgroundJob) -> bool:
        """Start `job` unless another is running; returns whether it started."""
        with self._lock:
            if self._latest is not None and self._latest.running:
                return False
            self._latest = job
        job.start()
        return True

    @property
    def latest(self) -> BackgroundJob | None:
        return self._latest

    @property
    def running(self) -> BackgroundJob | None:
        job = self._latest
        return job if job is not None and job.running else None
