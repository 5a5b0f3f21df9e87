"""Typed errors of the optimizer. Messages are written to be shown verbatim."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from steering.errors import (
    FitnessError,
    InvalidInputError,
    JobCancelled,
    SteerSwarmError,
    short_message,
)

__all__ = [
    "ApplyRefused",
    "FitnessError",
    "JournalWriteError",
    "OptimizationCancelled",
    "lm_eval_failures",
    "short_message",
]


class ApplyRefused(InvalidInputError):
    """A result (or a point of its front) may not be applied to the active
    vectors: the message says why (optimize/run/apply_rule.py)."""


class JournalWriteError(SteerSwarmError):
    """A run's journal could not be written (a full disk, a read-only folder):
    the run stops rather than go on with evaluations it could not keep."""


class OptimizationCancelled(JobCancelled):
    """The run was cancelled before any steering setting was scored, so there
    is no result to report. (A run cancelled later returns a result marked
    `cancelled` instead of raising.)"""


@contextmanager
def lm_eval_failures(task: str) -> Iterator[None]:
    """lm-eval's untyped errors while scoring `task` as FitnessError; ours unchanged."""
    try:
        yield
    except SteerSwarmError:
        raise
    except Exception as exc:
        raise FitnessError(
            f"lm-eval failed while scoring {task!r}: {type(exc).__name__}: {short_message(exc)}"
        ) from exc
