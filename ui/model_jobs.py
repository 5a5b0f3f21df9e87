"""Model work of every tab as the app's jobs: one at a time, estimated before
it starts, with progress, a Cancel from any page and a go-ahead for long ones.

A tab hands `ModelJobs.start` two functions of the current model: `plan`
(what the work will read, as a WorkEstimate; run under the model lock, runs
no long model work) and `work` (the work itself, under the lock, with the
job's JobControl on the Steerer, so every forward pass it makes checks the
job's own cancel event and reports progress). Gradio handlers then only read
the job's events (`follow`) and turn them into their outputs: a page that
reloads follows the same job again (`attach` in each tab).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

from steering.budget import WorkEstimate
from steering.errors import JobCancelled, SteerSwarmError
from steering.progress import JobControl
from steering.session import Current, ModelSession
from ui import format as fmt
from ui.jobs import WAITING, BackgroundJob, Emit, JobRegistry
from ui.model_access import VectorView, vector_view

log = logging.getLogger(__name__)

# What each tab's jobs are called (kinds are identifiers, titles are for people).
CAPTURE, TASK_VECTOR, APPLY = "capture", "task_vector", "apply"
SCAN, MAP, COMPARE, INSPECT, APPLY_CELL = (
    "explore_scan", "explore_map", "explore_compare", "explore_inspect", "explore_apply",
)
OPTIMIZE = "optimize"
# Jobs whose end changes the Steering tab's table: a page loading meanwhile follows them there.
STEERING_KINDS = (CAPTURE, TASK_VECTOR, APPLY)

PlanOf = Callable[[Current], WorkEstimate]
# work(current, emit, control): `control` is the job's (its cancel event, for
# work that stops between steps of its own, such as a map's rows).
WorkOf = Callable[[Current, Emit, JobControl], Any]


def busy(job: BackgroundJob | None) -> str:
    """Why a job did not start: another one runs."""
    title = "another job" if job is None else job.title.lower()
    return (
        f"⚠ The model is busy with {fmt.md(title)} (started from this or another page); "
        "only one job runs at a time. Wait for it, or **Cancel** it."
    )


class _Planned:
    """A job's plan: the estimate of `plan(current)`, made with the job's
    control on the Steerer (the calibration it may run is cancellable)."""

    def __init__(self, session: ModelSession, plan: PlanOf) -> None:
        self.session, self.plan = session, plan

    def __call__(self, control: JobControl) -> WorkEstimate:
        current = self.session.current()
        with current.steerer.controlled(control):
            return self.plan(current)


class _Controlled:
    """A job's work: `work(current, emit)` with the job's control on the Steerer."""

    def __init__(self, session: ModelSession, work: WorkOf) -> None:
        self.session, self.work = session, work

    def __call__(self, emit: Emit, control: JobControl) -> Any:
        current = self.session.current()
        with current.steerer.controlled(control):
            return self.work(current, emit, control)


class ModelJobs:
    """Starts a tab's model work as jobs of the app's registry."""

    def __init__(self, session: ModelSession, registry: JobRegistry | None = None) -> None:
        self.session = session
        self.registry = registry or JobRegistry()

    def start(
        self, title: str, kind: str, plan: PlanOf | None, work: WorkOf
    ) -> BackgroundJob | None:
        """Start the job; None when another job is running."""
        job = BackgroundJob(
            self.session.lock,
            _Controlled(self.session, work),
            title=title,
            kind=kind,
            plan=None if plan is None else _Planned(self.session, plan),
            gate=self.registry.gate(),
        )
        return job if self.registry.start(job) else None

    def attachable(self, kinds: tuple[str, ...]) -> BackgroundJob | None:
        """The app's running job when it is of one of `kinds` (for a page that
        loads while it runs)."""
        job = self.registry.running
        return job if job is not None and job.kind in kinds else None

    def cancel(self) -> str:
        return self.registry.cancel()

    def go_on(self) -> str:
        return self.registry.go_on()


def status_of(item: Any) -> str | None:
    """The status line of a job's own item (its estimate, its question, its
    progress), or None for items the tab shows its own way."""
    status = getattr(item, "status", None)
    return status() if callable(status) else None


def follow_status(
    job: BackgroundJob, action: str
) -> Iterator[tuple[str, Any]]:
    """A job's events as ("status", line) for what every job says (waiting
    for the model, its estimate, question and progress), ("item", x) for the
    tab's own items, then ("done", result); a failure, a cancel or a refusal
    ends it with ("status", why)."""
    try:
        for kind, item in job.follow():
            if kind == WAITING:
                yield "status", fmt.WAITING
                continue
            line = status_of(item)
            yield ("status", line) if line is not None else ("item", item)
    except JobCancelled as exc:
        yield "status", f"✕ {fmt.md(exc)}"
        return
    except SteerSwarmError as exc:
        yield "status", fmt.failed(action, str(exc))
        return
    except Exception as exc:  # a bug: the status line must say what happened
        log.exception("job %r failed", action)
        yield "status", fmt.failure(action, exc)
        return
    yield "done", job.result


def vector_views(job: BackgroundJob | None, action: str) -> Iterator[VectorView]:
    """(table, remove choices, status) while a vector-changing job runs; its
    result (a VectorView) at the end. None: the busy line."""
    from gradio import update

    if job is None:
        return
    for kind, item in follow_status(job, action):
        if kind == "status":
            yield update(), update(), item
        elif kind == "done":
            yield item


def changed_vectors(session: ModelSession, current: Current, status: str) -> VectorView:
    """The view after a job changed the active vectors: they are written to
    the data folder (the session survives a restart), and a failure to write
    is said under `status`."""
    warning = session.keep(current.steerer)
    return vector_view(current, f"{status}  \n{warning}" if warning else status)
