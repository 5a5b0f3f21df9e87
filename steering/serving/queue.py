"""Requests wait their turn for the model, and run together when they can.

One worker thread serves every request of an app. It takes the session's
model lock, as every tab and optimization does, so a request never lands in
the middle of a capture, a chat reply or an optimization: it waits for them
(and `status()` says why), and they wait for it. Once it holds the lock it
takes the waiting requests in order: greedy ones together, up to `max_batch`
rows, each row steered by its own vectors (`rows.generate_rows`); a sampled
request alone. Requests that arrive while a batch runs wait for the next.

Each request's steering is turned into vectors under the lock, just before
its batch runs (moving a vector to another layer may run the model), and is
never applied outside the batch: the app's active vectors are back on the
model as soon as it ends, whether it finished, failed or every client left.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from steering.errors import NoModelError, ServerBusyError, SteerSwarmError
from steering.limits import MAX_BATCH_ROWS, MAX_WAITING_REQUESTS
from steering.serving.catalog import VectorCatalog
from steering.serving.rows import CANCELLED, Row, RowOutput, RowRequest, RowResult, generate_rows
from steering.serving.spec import SteeringChoice
from steering.session import ModelSession
from steering.vector import SteeringVector

log = logging.getLogger(__name__)

WAITING, RUNNING, DONE = "waiting", "running", "done"
# Events a ticket's listener receives: (RUNNING, vectors), (TEXT, piece),
# (DONE, RowResult) or (FAILED, exception); the last two end it.
TEXT, FAILED = "text", "failed"

# Requests sent together reach the server a few milliseconds apart: the
# worker waits this long after the first before it takes the model, so they
# share a batch.
GATHER_SECONDS = 0.02

Listener = Callable[[str, Any], None]


@dataclass(frozen=True)
class Job:
    """A checked request: the row it runs as and the steering it asked for."""

    row: RowRequest
    steering: SteeringChoice


class Ticket(RowOutput):
    """One submitted job, from waiting to done. `wait()` blocks for the
    result; a listener (given to `submit`) hears every event as it happens,
    from the worker thread."""

    def __init__(self, job: Job, listener: Listener | None, queue: GenerationQueue) -> None:
        self.job = job
        self._listener = listener
        self._queue = queue
        self._changed = threading.Condition()
        self._cancel = threading.Event()
        self.state = WAITING
        self.vectors: tuple[SteeringVector, ...] = ()
        self.result: RowResult | None = None
        self.error: BaseException | None = None

    # RowOutput: called by the generation
    def on_text(self, delta: str) -> None:
        self._tell(TEXT, delta)

    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def cancel(self) -> None:
        """The client went away: drop the job if it still waits, else end its
        row at the next token. Safe to call at any time, more than once."""
        self._cancel.set()
        self._queue._withdraw(self)

    def position(self) -> int:
        """1 for the next request to run, 0 once it runs or ended."""
        return self._queue._position(self)

    def wait(self, timeout: float | None = None) -> RowResult:
        """The result, once done; raises the job's error, or TimeoutError."""
        with self._changed:
            if not self._changed.wait_for(lambda: self.state == DONE, timeout):
                raise TimeoutError("the request is still waiting or running")
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result

    # the queue's side
    def _start(self, vectors: tuple[SteeringVector, ...]) -> None:
        with self._changed:
            self.state, self.vectors = RUNNING, vectors
        self._tell(RUNNING, vectors)

    def _finish(self, result: RowResult) -> None:
        with self._changed:
            self.state, self.result = DONE, result
            self._changed.notify_all()
        self._tell(DONE, result)

    def _fail(self, error: BaseException) -> None:
        with self._changed:
            self.state, self.error = DONE, error
            self._changed.notify_all()
        self._tell(FAILED, error)

    def _tell(self, kind: str, payload: Any) -> None:
        if self._listener is None:
            return
        try:
            self._listener(kind, payload)
        except Exception:  # a listener's bug must not stop the batch
            log.exception("steerswarm API: a request's listener failed")


@dataclass(frozen=True)
class QueueStatus:
    """What a client asking `/v1/steering/queue` is told."""

    waiting: int
    running: int
    max_waiting: int
    max_batch: int
    model_busy: bool
    note: str
    served: int
    cancelled: int
    batches: int

    def to_json(self) -> dict[str, Any]:
        return {
            "object": "steering.queue",
            "waiting": self.waiting,
            "running": self.running,
            "max_waiting": self.max_waiting,
            "max_batch": self.max_batch,
            "model_busy": self.model_busy,
            "note": self.note,
            "served": self.served,
            "cancelled": self.cancelled,
            "batches": self.batches,
        }


BUSY_NOTE = (
    "The model is busy with other work in the app (a capture, a chat reply or an "
    "optimization); waiting requests run as soon as it ends."
)


class GenerationQueue:
    """The app's API requests and the one thread that serves them.

    `busy_note()` (optional) says what holds the model when requests wait
    for it, e.g. an optimization's progress and time left.
    """

    def __init__(
        self,
        session: ModelSession,
        catalog: VectorCatalog,
        *,
        max_waiting: int = MAX_WAITING_REQUESTS,
        max_batch: int = MAX_BATCH_ROWS,
        gather_seconds: float = GATHER_SECONDS,
        busy_note: Callable[[], str | None] | None = None,
    ) -> None:
        if max_waiting < 1 or max_batch < 1:
            raise ValueError("max_waiting and max_batch must be 1 or more")
        self.session = session
        self.catalog = catalog
        self.max_waiting = max_waiting
        self.max_batch = max_batch
        self.gather_seconds = gather_seconds
        self.busy_note = busy_note
        self._changed = threading.Condition()
        self._pending: list[Ticket] = []
        self._running: list[Ticket] = []
        self._wants_model = False
        self._closed = False
        self._served = 0
        self._cancelled = 0
        self._batches = 0  # generations run: fewer than requests served when they shared
        self._thread = threading.Thread(
            target=self._serve, name="steerswarm-api-worker", daemon=True
        )
        self._thread.start()

    def submit(self, job: Job, listener: Listener | None = None) -> Ticket:
        """Queue `job`; raises ServerBusyError when `max_waiting` already wait."""
        ticket = Ticket(job, listener, self)
        with self._changed:
            if self._closed:
                raise NoModelError("The API server is shutting down.")
            if len(self._pending) >= self.max_waiting:
                raise ServerBusyError(
                    f"{len(self._pending)} requests are already waiting for the model (at most "
                    f"{self.max_waiting} may wait); try again shortly. {self._note()}"
                )
            self._pending.append(ticket)
            self._changed.notify_all()
        return ticket

    def status(self) -> QueueStatus:
        with self._changed:
            waiting, running = len(self._pending), len(self._running)
            served, cancelled, batches = self._served, self._cancelled, self._batches
            wants_model = self._wants_model
        # Busy: requests wait while something else (a tab, an optimization)
        # holds the model lock.
        locked = getattr(self.session.lock, "locked", None)
        held = locked() if callable(locked) else wants_model
        busy = bool(waiting) and not running and bool(held)
        if busy:
            note = self._note()
        elif running:
            note = f"Generating {running} request(s); {waiting} wait for the next batch."
        else:
            note = "Idle: a request runs at once." if not waiting else "Starting the next batch."
        return QueueStatus(
            waiting, running, self.max_waiting, self.max_batch, busy, note, served, cancelled,
            batches,
        )

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Whether nothing waits or runs, after waiting up to `timeout` for it."""
        with self._changed:
            return self._changed.wait_for(
                lambda: not self._pending and not self._running, timeout
            )

    def close(self, timeout: float = 5.0) -> None:
        """Refuse new requests, fail the waiting ones, let a running batch end."""
        with self._changed:
            self._closed = True
            dropped, self._pending = self._pending, []
            self._changed.notify_all()
        for ticket in dropped:
            ticket._fail(NoModelError("The API server stopped before this request ran."))
        self._thread.join(timeout)

    # -- the worker ----------------------------------------------------------------

    def _note(self) -> str:
        note = self.busy_note() if self.busy_note is not None else None
        return note or BUSY_NOTE

    def _position(self, ticket: Ticket) -> int:
        with self._changed:
            return self._pending.index(ticket) + 1 if ticket in self._pending else 0

    def _withdraw(self, ticket: Ticket) -> None:
        with self._changed:
            if ticket not in self._pending:
                return
            self._pending.remove(ticket)
            self._cancelled += 1
            self._changed.notify_all()
        ticket._finish(RowResult("", CANCELLED, len(ticket.job.row.input_ids), 0))

    def _serve(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: bool(self._pending) or self._closed)
                if self._closed:
                    return
                self._wants_model = True
            time.sleep(self.gather_seconds)
            with self.session.lock:
                batch = self._take()
                try:
                    if batch:
                        self._run(batch)
                finally:
                    with self._changed:
                        self._running = []
                        self._changed.notify_all()

    def _take(self) -> list[Ticket]:
        """The next batch: the first waiting request alone when it samples,
        else the waiting greedy requests in order, up to `max_batch`."""
        with self._changed:
            self._wants_model = False
            if not self._pending:
                return []
            first = self._pending[0]
            if not first.job.row.sampling.greedy:
                batch = [first]
            else:
                batch = [t for t in self._pending if t.job.row.sampling.greedy][: self.max_batch]
            for ticket in batch:
                self._pending.remove(ticket)
            self._running = batch
            return batch

    def _run(self, batch: list[Ticket]) -> None:
        """Resolve each request's vectors, then generate the batch. Errors go
        to the tickets they belong to; the model lock is held throughout."""
        try:
            steerer = self.session.current().steerer
        except SteerSwarmError as exc:
            for ticket in batch:
                ticket._fail(exc)
            return
        rows: list[Row] = []
        tickets: list[Ticket] = []
        for ticket in batch:
            if ticket.cancelled():
                self._count(cancelled=1)
                ticket._finish(RowResult("", CANCELLED, len(ticket.job.row.input_ids), 0))
                continue
            try:
                vectors = self.catalog.resolve(steerer, ticket.job.steering)
                for vector in vectors:
                    steerer.check(vector)
            except SteerSwarmError as exc:
                ticket._fail(exc)
                continue
            ticket._start(vectors)
            rows.append(Row(ticket.job.row, vectors, ticket))
            tickets.append(ticket)
        if not rows:
            return
        with self._changed:
            self._batches += 1
        try:
            results = generate_rows(steerer, rows)
        except Exception as exc:  # handed to each request's client as a server error
            log.exception("steerswarm API: a batch of %d request(s) failed", len(rows))
            for ticket in tickets:
                ticket._fail(exc)
            return
        for ticket, result in zip(tickets, results, strict=True):
            self._count(**{"cancelled" if result.finish_reason == CANCELLED else "served": 1})
            ticket._finish(result)

    def _count(self, served: int = 0, cancelled: int = 0) -> None:
        with self._changed:
            self._served += served
            self._cancelled += cancelled
