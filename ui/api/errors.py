"""OpenAI-style error replies: {"error": {"message", "type", "param", "code"}}
with the HTTP status OpenAI's API uses for the same kind of problem.

The library raises typed errors (steering/errors.py) whose messages are
written to be shown as they are; this module only picks the status, the
type and the code for each."""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi.responses import JSONResponse

from steering.errors import (
    ContextLengthError,
    IncompatibleVectorError,
    InvalidInputError,
    NoModelError,
    RequestFieldError,
    ServerBusyError,
    SteerSwarmError,
    UnknownVectorError,
    UnsupportedModelError,
)

log = logging.getLogger(__name__)

INVALID = "invalid_request_error"


class ApiError(Exception):
    """An error reply: HTTP `status` and OpenAI's error object."""

    def __init__(
        self,
        status: int,
        message: str,
        kind: str = INVALID,
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind
        self.param = param
        self.code = code

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        }

    def response(self) -> JSONResponse:
        headers = {"Retry-After": "1"} if self.status == 429 else None
        return JSONResponse(self.body(), status_code=self.status, headers=headers)

    def sse(self) -> str:
        """The error as a server-sent event, for a stream that already began
        (the OpenAI client raises it as an APIError)."""
        return f"data: {json.dumps(self.body())}\n\n"


def api_error(exc: BaseException) -> ApiError:
    """The reply for an exception raised while serving a request."""
    if isinstance(exc, ApiError):
        return exc
    message = " ".join(str(exc).split())
    if isinstance(exc, UnknownVectorError):
        return ApiError(404, message, param=exc.param, code=exc.code or "vector_not_found")
    if isinstance(exc, ContextLengthError):
        return ApiError(400, message, param=exc.param, code="context_length_exceeded")
    if isinstance(exc, RequestFieldError):
        return ApiError(400, message, param=exc.param, code=exc.code)
    if isinstance(exc, IncompatibleVectorError):
        return ApiError(400, message, param="steering", code="incompatible_vector")
    if isinstance(exc, InvalidInputError):
        return ApiError(400, message)
    if isinstance(exc, ServerBusyError):
        return ApiError(429, message, kind="rate_limit_error", code="too_many_waiting_requests")
    if isinstance(exc, (NoModelError, UnsupportedModelError)):
        return ApiError(503, message, kind="server_error", code="model_not_available")
    if isinstance(exc, SteerSwarmError):
        return ApiError(500, message, kind="server_error")
    log.error("steerswarm API: unexpected error", exc_info=exc)
    return ApiError(500, f"The server failed: {type(exc).__name__}: {message}", kind="server_error")
