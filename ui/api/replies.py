"""The JSON of OpenAI's replies: whole completions and streamed chunks.

Besides OpenAI's fields, a reply carries `steering`: the vectors that
steered it (id, layer, alpha, strength), so a client sees what a name or a
strength it sent became. OpenAI's client keeps unknown fields."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from steering.serving.rows import RowResult
from steering.vector import SteeringVector

CHAT, COMPLETION = "chat", "completion"


def applied(vectors: Sequence[SteeringVector]) -> list[dict[str, Any]]:
    return [
        {"id": v.id, "layer": v.layer, "alpha": v.alpha, "strength": v.strength} for v in vectors
    ]


@dataclass
class Reply:
    """One request's reply: its id, time and model, shared by every chunk."""

    kind: str
    model: str
    id: str = ""
    created: int = field(default_factory=lambda: int(time.time()))

    def __post_init__(self) -> None:
        prefix = "chatcmpl" if self.kind == CHAT else "cmpl"
        self.id = self.id or f"{prefix}-{uuid.uuid4().hex[:24]}"

    def _head(self, chunk: bool) -> dict[str, Any]:
        if self.kind == CHAT:
            kind = "chat.completion.chunk" if chunk else "chat.completion"
        else:
            kind = "text_completion"
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model}

    def whole(self, result: RowResult, vectors: Sequence[SteeringVector]) -> dict[str, Any]:
        """The non-streamed reply."""
        if self.kind == CHAT:
            choice: dict[str, Any] = {
                "index": 0,
                "message": {"role": "assistant", "content": result.text},
                "logprobs": None,
                "finish_reason": result.finish_reason,
            }
        else:
            choice = {
                "index": 0,
                "text": result.text,
                "logprobs": None,
                "finish_reason": result.finish_reason,
            }
        return {
            **self._head(chunk=False),
            "choices": [choice],
            "usage": usage(result),
            "steering": applied(vectors),
        }

    def chunk(
        self, text: str | None = None, finish: str | None = None, role: bool = False
    ) -> str:
        """One streamed chunk as a server-sent event."""
        if self.kind == CHAT:
            delta: dict[str, Any] = {"role": "assistant", "content": ""} if role else {}
            if text is not None:
                delta["content"] = text
            choice: dict[str, Any] = {"index": 0, "delta": delta, "logprobs": None,
                                      "finish_reason": finish}
        else:
            choice = {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish}
        return event({**self._head(chunk=True), "choices": [choice]})

    def usage_chunk(self, result: RowResult) -> str:
        """The last chunk when the client asked for usage (stream_options)."""
        return event({**self._head(chunk=True), "choices": [], "usage": usage(result)})


def usage(result: RowResult) -> dict[str, int]:
    return {
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens,
        "total_tokens": result.prompt_tokens + result.completion_tokens,
    }


def event(data: dict[str, Any]) -> str:
    return f"data: {json.dumps(data)}\n\n"


DONE = "data: [DONE]\n\n"


def comment(text: str) -> str:
    """An SSE comment: clients skip it; people watching the stream read it."""
    return ": " + " ".join(text.split()) + "\n\n"
