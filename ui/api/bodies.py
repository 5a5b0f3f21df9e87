"""A chat or completion request's JSON body, checked into a Job.

Only the fields that change the reply are read; fields the server cannot
honour (several choices, log probabilities, penalties, tools) are refused
when they ask for something, never silently ignored. Everything is checked
before the request waits for the model, with the model's tokenizer and the
vectors listed now.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from steering.engine import Steerer
from steering.errors import RequestFieldError
from steering.limits import MAX_REQUEST_BYTES
from steering.serving.catalog import VectorCatalog
from steering.serving.prompts import chat_tokens, completion_tokens, row_request, sampling_of
from steering.serving.queue import Job
from steering.serving.spec import parse_steering
from steering.validate import typed
from ui.api.errors import ApiError

CHAT, COMPLETION = "chat", "completion"
# OpenAI's completions default is 16 tokens; chat replies run to the end.
DEFAULT_MAX_TOKENS = {CHAT: 512, COMPLETION: 16}

# Fields that are accepted only with a value that asks for nothing.
_NOTHING: dict[str, tuple[Any, ...]] = {
    "n": (None, 1),
    "best_of": (None, 1),
    "echo": (None, False),
    "suffix": (None, ""),
    "logprobs": (None, False, 0),
    "top_logprobs": (None, 0),
    "logit_bias": (None, {}),
    "frequency_penalty": (None, 0, 0.0),
    "presence_penalty": (None, 0, 0.0),
    "tools": (None, []),
    "functions": (None, []),
    "tool_choice": (None, "none", "auto"),
    "response_format": (None, {"type": "text"}),
}


@dataclass(frozen=True)
class ParsedRequest:
    """What the route needs: the job, and how to answer."""

    job: Job
    stream: bool
    include_usage: bool


def read_json(raw: bytes) -> dict[str, Any]:
    """The request body as a JSON object (NaN and infinities refused)."""
    if len(raw) > MAX_REQUEST_BYTES:
        raise too_large(len(raw))

    def no_constants(name: str) -> Any:
        raise ValueError(f"{name} is not a JSON number")

    try:
        body = json.loads(raw, parse_constant=no_constants)
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, f"The request body is not valid JSON: {exc}.") from None
    if not isinstance(body, dict):
        raise ApiError(400, f"The request body must be a JSON object, got {typed(body)}.")
    return body


def too_large(size: int) -> ApiError:
    return ApiError(
        413,
        f"The request body is {size:,} bytes or more; this server takes at most "
        f"{MAX_REQUEST_BYTES:,}.",
        code="request_too_large",
    )


def parse_request(
    body: Mapping[str, Any], kind: str, steerer: Steerer, catalog: VectorCatalog, served: str
) -> ParsedRequest:
    """Check `body` (a /v1/chat/completions or /v1/completions request) into
    a Job for `steerer`'s model, served under the name `served`.

    Raises:
        ApiError: an unknown model (404).
        RequestFieldError and other typed errors: anything else wrong.
    """
    model = body.get("model")
    if model is not None and model != served:
        raise ApiError(
            404,
            f"The model {typed(model)} does not exist; this server serves {served!r} "
            "(/v1/models).",
            param="model",
            code="model_not_found",
        )
    for field, allowed in _NOTHING.items():
        if body.get(field) not in allowed:
            raise RequestFieldError(
                f"{field} {typed(body.get(field))} is not supported by this server (it gives "
                "one greedy or sampled reply per request, without log probabilities, "
                "penalties or tools).",
                field,
                "unsupported_parameter",
            )
    stream = _flag(body, "stream")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, Mapping):
        raise RequestFieldError("stream_options must be an object.", "stream_options")
    include_usage = bool(options and options.get("include_usage"))
    if kind == CHAT:
        input_ids = chat_tokens(steerer.tokenizer, body.get("messages"))
        max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
        prompt_param = "messages"
    else:
        input_ids = completion_tokens(steerer.tokenizer, body.get("prompt"))
        max_tokens = body.get("max_tokens")
        prompt_param = "prompt"
    sampling = sampling_of(body.get("temperature"), body.get("top_p"), body.get("seed"))
    row = row_request(
        steerer.info, input_ids, max_tokens, sampling, body.get("stop"), prompt_param,
        DEFAULT_MAX_TOKENS[kind],
    )
    steering = parse_steering(body.get("steering"))
    catalog.check(steerer, steering)
    return ParsedRequest(Job(row, steering), stream, include_usage)


def _flag(body: Mapping[str, Any], field: str) -> bool:
    value = body.get(field, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise RequestFieldError(f"{field} must be true or false, got {typed(value)}.", field)
    return value
