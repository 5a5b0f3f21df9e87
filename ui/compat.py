"""The few places where Gradio 4.37 (inside text-generation-webui) and
current Gradio (6.x, standalone) differ in the API this UI uses.

Everything else in ui/ sticks to arguments that exist in both versions.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import gradio as gr


def _chatbot_format() -> tuple[bool, dict[str, Any]]:
    """(uses message dicts, extra constructor kwargs) for this Gradio's Chatbot.

    Gradio 4.37 only knows [user, bot] pairs; 4.44-5.x take type="messages";
    6.x dropped the argument and accepts only message dicts.
    """
    params = inspect.signature(gr.Chatbot.__init__).parameters
    if "type" in params:
        return True, {"type": "messages"}
    from gradio.components import chatbot

    return hasattr(chatbot, "ChatbotDataMessages"), {}


CHATBOT_MESSAGES, _CHATBOT_KWARGS = _chatbot_format()


def chatbot(label: str, **kwargs: Any) -> gr.Chatbot:
    """A Chatbot that shows the value `to_chatbot()` makes."""
    return gr.Chatbot(label=label, **_CHATBOT_KWARGS, **kwargs)


def to_chatbot(messages: Sequence[dict[str, str]], as_messages: bool | None = None) -> list[Any]:
    """Turn a list of {"role", "content"} messages into this Gradio's Chatbot
    value (`as_messages` overrides the detected format, for tests)."""
    if CHATBOT_MESSAGES if as_messages is None else as_messages:
        return [{"role": m["role"], "content": m["content"]} for m in messages]
    pairs: list[list[str | None]] = []
    for message in messages:
        if message["role"] == "user" or not pairs or pairs[-1][1] is not None:
            pairs.append([None, None])
        pairs[-1][0 if message["role"] == "user" else 1] = message["content"]
    return pairs


def table_height(px: int) -> dict[str, Any]:
    """Dataframe kwargs capping a table's height at `px`. Gradio 4.37 calls it
    `height` and draws an empty table that tall (500 px by default, most of
    the webui's screen); current Gradio calls it `max_height`."""
    params = inspect.signature(gr.Dataframe.__init__).parameters
    return {"max_height" if "max_height" in params else "height": px}
