"""A request's prompt as tokens, checked against the model before it waits.

Chat requests go through the tokenizer's chat template (as the Chat tab
does, `steering.generate.chat_input_ids`); completion requests are the raw
prompt (as `steering.generate.complete` tokenizes it). Errors name the
request field they are about.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from jinja2 import TemplateError

from steering.errors import ContextLengthError, RequestFieldError
from steering.generate import MAX_NEW_TOKENS_LIMIT, chat_input_ids
from steering.limits import MAX_STOP_CHARS, MAX_STOP_SEQUENCES
from steering.models import ModelInfo
from steering.serving.rows import MAX_TEMPERATURE, RowRequest, Sampling
from steering.validate import typed

# OpenAI's roles; "developer" is its newer name for "system".
ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


def chat_tokens(tokenizer: Any, messages: Any) -> tuple[int, ...]:
    """The conversation's tokens, ending where the assistant speaks."""
    if not isinstance(messages, Sequence) or isinstance(messages, str) or not messages:
        raise RequestFieldError(
            f"messages must be a non-empty list of messages, got {typed(messages)}.", "messages"
        )
    plain = [_message(m, f"messages[{i}]") for i, m in enumerate(messages)]
    try:
        ids = chat_input_ids(tokenizer, plain)
    except (TemplateError, ValueError, TypeError) as exc:
        raise RequestFieldError(
            f"messages: the model's chat template refused the conversation: {exc}", "messages"
        ) from None
    return tuple(int(t) for t in ids[0].tolist())


def _message(message: Any, param: str) -> dict[str, str]:
    if not isinstance(message, Mapping):
        raise RequestFieldError(f"{param} must be an object, got {typed(message)}.", param)
    role = message.get("role")
    if role not in ROLES:
        raise RequestFieldError(
            f"{param}.role must be one of {', '.join(ROLES)}, got {typed(role)} (tool and "
            "function messages are not supported).",
            f"{param}.role",
        )
    content = message.get("content")
    if isinstance(content, list):  # [{"type": "text", "text": ...}, ...]
        parts = []
        for j, part in enumerate(content):
            if not isinstance(part, Mapping) or part.get("type") != "text" or not isinstance(
                part.get("text"), str
            ):
                raise RequestFieldError(
                    f"{param}.content[{j}] must be a text part ({{\"type\": \"text\", \"text\": "
                    f"...}}); images and audio are not supported, got {typed(part)}.",
                    f"{param}.content",
                )
            parts.append(part["text"])
        content = "".join(parts)
    if not isinstance(content, str):
        raise RequestFieldError(
            f"{param}.content must be a text or a list of text parts, got {typed(content)}.",
            f"{param}.content",
        )
    return {"role": ROLES[role], "content": content}


def completion_tokens(tokenizer: Any, prompt: Any) -> tuple[int, ...]:
    """A completion prompt's tokens: one text (or a list holding one)."""
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise RequestFieldError(
            f"prompt must be one text (a list of several prompts, or of token ids, is not "
            f"supported), got {typed(prompt)}.",
            "prompt",
        )
    if not prompt.strip():
        raise RequestFieldError("prompt is empty.", "prompt")
    return tuple(int(t) for t in tokenizer(prompt)["input_ids"])


def row_request(
    info: ModelInfo,
    input_ids: tuple[int, ...],
    max_tokens: int | None,
    sampling: Sampling,
    stop: Any,
    prompt_param: str,
    default_max_tokens: int,
) -> RowRequest:
    """The row a request runs as, once its size fits the model's context.

    Raises:
        RequestFieldError: max_tokens or stop out of range.
        ContextLengthError: the prompt and max_tokens exceed the context.
    """
    new = default_max_tokens if max_tokens is None else max_tokens
    if isinstance(new, bool) or not isinstance(new, int) or not 1 <= new <= MAX_NEW_TOKENS_LIMIT:
        raise RequestFieldError(
            f"max_tokens must be a whole number from 1 to {MAX_NEW_TOKENS_LIMIT}, "
            f"got {typed(max_tokens)}.",
            "max_tokens",
        )
    if len(input_ids) + new > info.max_context:
        raise ContextLengthError(
            f"This model's context is {info.max_context} tokens; the {prompt_param} is "
            f"{len(input_ids)} tokens and {new} were asked for. Shorten the {prompt_param} or "
            "ask for fewer tokens (max_tokens).",
            prompt_param,
            "context_length_exceeded",
        )
    return RowRequest(tuple(input_ids), new, sampling, check_stop(stop))


def check_stop(stop: Any) -> tuple[str, ...]:
    """OpenAI's `stop`: null, one text, or a list of up to MAX_STOP_SEQUENCES texts."""
    if stop is None:
        return ()
    texts = [stop] if isinstance(stop, str) else stop
    if (
        not isinstance(texts, list)
        or len(texts) > MAX_STOP_SEQUENCES
        or not all(isinstance(t, str) and 0 < len(t) <= MAX_STOP_CHARS for t in texts)
    ):
        raise RequestFieldError(
            f"stop must be a text or a list of at most {MAX_STOP_SEQUENCES} non-empty texts of "
            f"at most {MAX_STOP_CHARS} characters, got {typed(stop)}.",
            "stop",
        )
    return tuple(texts)


def sampling_of(temperature: Any, top_p: Any, seed: Any) -> Sampling:
    """OpenAI's sampling fields (None: the default) as a Sampling: greedy at
    temperature 0, which is the default here (OpenAI's is 1) so that a
    request without one gets the same reply every time."""
    values: dict[str, Any] = {}
    for param, value, minimum, maximum in (
        ("temperature", temperature, 0.0, MAX_TEMPERATURE),
        ("top_p", top_p, 0.0, 1.0),
    ):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            minimum <= value <= maximum
        ) or (param == "top_p" and value == 0):
            low = "above 0" if param == "top_p" else f"from {minimum:g}"
            raise RequestFieldError(
                f"{param} must be a number {low} to {maximum:g}, got {typed(value)}.", param
            )
        values[param] = float(value)
    if seed is not None:
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
            raise RequestFieldError(f"seed must be a whole number >= 0, got {typed(seed)}.", "seed")
        values["seed"] = seed
    return Sampling(**values)
