"""What every tab does with the shared model: read its facts without waiting,
and run a vector-changing action under the model lock.

One place for both, so no tab borrows another tab's helpers. The lock is the
session's (in the webui, its generation lock): a view refresh never waits for
it (an optimization may hold it for minutes), a vector change waits and says
so.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import gradio as gr

from steering.errors import SteerSwarmError
from steering.models import ModelInfo
from steering.session import Current, ModelSession
from steering.vector import SteeringVector
from ui import format as fmt
from ui.jobs import WAITING, ModelJob

log = logging.getLogger(__name__)

# (model facts, active vectors, problem); with no usable model: (None, (), why).
Facts = tuple[ModelInfo | None, tuple[SteeringVector, ...], str]

# Outputs of every vector-changing action: (table rows, remove-dropdown update, status).
VectorView = tuple[Any, Any, str]


def model_facts(session: ModelSession) -> Facts:
    """The model and its vectors now, for building and refreshing the UI.
    The caller holds the lock, or accepts a view that may be a moment old."""
    try:
        steerer = session.current().steerer
    except SteerSwarmError as exc:
        return None, (), str(exc)
    return steerer.info, steerer.vectors, ""


def peek_facts(
    session: ModelSession, read: Callable[[], Facts] | None = None
) -> Facts | None:
    """`read()` (default: `model_facts(session)`) if the model lock is free
    right now. While the model is busy (an optimization may hold it for
    minutes): the last-used model's facts and the vectors the user made
    active, read without the lock, so a page loaded meanwhile shows the real
    state; None only when no model was used yet."""
    lock: Any = session.lock  # a lock, or the webui's context manager: acquire when it can
    acquire = getattr(lock, "acquire", None)
    if acquire is not None and not acquire(blocking=False):
        steerer = session.glance()
        return None if steerer is None else (steerer.info, steerer.user_vectors, "")
    try:
        return model_facts(session) if read is None else read()
    finally:
        if acquire is not None:
            lock.release()


def vector_view(current: Current, status: str) -> VectorView:
    """The vector table, the remove dropdown and `status` after an action."""
    vectors = current.steerer.vectors
    return (
        fmt.vector_rows(vectors),
        gr.update(choices=fmt.vector_choices(vectors), value=None),
        fmt.notice_prefix(current.notice) + status,
    )


def locked(
    session: ModelSession, action: str, work: Callable[[Current], str]
) -> Iterator[VectorView]:
    """Run `work(current)` under the model lock in a job thread; yield the
    waiting notice if the lock is busy, then the new view with the status
    `work` returned. A typed error is shown as "Could not <action>"."""

    def job_work(_emit: Callable[[Any], None]) -> VectorView:
        current = session.current()
        try:
            status = work(current)
        except SteerSwarmError as exc:
            return vector_view(current, fmt.failed(action, str(exc)))
        warning = session.keep(current.steerer)  # the session survives a restart
        return vector_view(current, f"{status}  \n{warning}" if warning else status)

    job = ModelJob(session.lock, job_work)
    try:
        for kind, _ in job.events():
            if kind == WAITING:
                yield gr.update(), gr.update(), fmt.WAITING
    except Exception as exc:  # no model, a model we cannot steer, or a bug
        if not isinstance(exc, SteerSwarmError):
            log.exception("steering action %r failed", action)
        yield gr.update(), gr.update(), fmt.failure(action, exc)
        return
    yield job.result
