"""Typed errors of the optimizer. Messages are written to be shown verbatim."""

from __future__ import annotations

from steering.errors import SteerSwarmError


class FitnessError(SteerSwarmError):
    """lm-eval could not load the task or failed while scoring a setting."""


class OptimizationCancelled(SteerSwarmError):
    """The run was cancelled before any steering setting was scored, so there
    is no result to report. (A run cancelled later returns a result marked
    `cancelled` instead of raising.)"""
