"""Typed errors. Every message is written to be shown to a user verbatim."""


class SteerSwarmError(Exception):
    """Base class of every error this project raises on purpose."""


class InvalidInputError(SteerSwarmError, ValueError):
    """A value given by the user is out of range or malformed."""


class NoModelError(SteerSwarmError):
    """No model is loaded, or it was unloaded."""


class UnsupportedModelError(SteerSwarmError):
    """The loaded model has no decoder layers we can steer."""


class IncompatibleVectorError(SteerSwarmError):
    """A steering vector does not fit the loaded model."""


class VectorFileError(SteerSwarmError):
    """A saved vector file is missing, truncated, corrupt or incomplete."""


class VectorWriteError(VectorFileError, OSError):
    """A vector file could not be written (read-only folder, full disk); the
    previous file, if any, is intact. Still an OSError for callers that catch one."""


class FitnessError(SteerSwarmError):
    """lm-eval could not index or load a task, or failed while scoring a setting."""


def short_message(exc: BaseException) -> str:
    """An exception's text on one line, at most 300 characters."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:299] + "…"


class RequestFieldError(InvalidInputError):
    """A field of an API request is wrong. `param` names it the way OpenAI's
    error objects do ("max_tokens", "steering.vectors[1].strength"), so a
    client can point at the field; the message says what was given and what
    is allowed."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.param = param
        self.code = code


class UnknownVectorError(RequestFieldError):
    """A request chose a vector by a name or id that nothing listed has."""


class ContextLengthError(RequestFieldError):
    """A prompt plus the tokens asked for exceeds the model's context."""


class ServerBusyError(SteerSwarmError):
    """Too many API requests are already waiting for the model."""


class JobCancelled(SteerSwarmError):
    """Long model work was cancelled; what it would have made was not kept."""


class JobRefused(SteerSwarmError):
    """A job was refused before it started: its estimate is above the limit
    the operator set for this app."""
