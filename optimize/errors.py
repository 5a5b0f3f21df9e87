"""Typed errors of the optimizer. Messages are written to be shown verbatim."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from steering.errors import SteerSwarmError


class FitnessError(SteerSwarmError):
    """lm-eval could not load the task or failed while scoring a setting."""


class OptimizationCancelled(SteerSwarmError):
    """The run was cancelled before any steering setting was scored, so there
    is no result to report. (A run cancelled later returns a result marked
    `cancelled` instead of raising.)"""


def short_message(exc: BaseException) -> str:
    """An exception's text on one line, at most 300 characters."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:299] + "…"


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
