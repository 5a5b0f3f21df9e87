"""The Chat tab: talk to the steered model, optionally beside the unsteered one.

The conversation is kept as {"role", "content"} messages in gr.State; the
steered replies are its context. With "Compare with unsteered" ticked, the
same conversation is answered a second time with every vector switched off,
and that reply is shown in the right-hand chat. Both run under the model lock,
so a vector change or an optimization never lands in the middle of a reply.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import gradio as gr

from steering import validate
from steering.errors import SteerSwarmError
from steering.generate import GenerationSettings, ReplyEnd, stream_reply
from steering.session import ModelSession
from ui import compat, format as fmt
from ui.jobs import WAITING, ModelJob

log = logging.getLogger(__name__)

Messages = list[dict[str, str]]
# (steered chatbot, unsteered chatbot, history, unsteered log, message box, status)
ChatView = tuple[Any, Any, Any, Any, Any, str]

DEFAULT_MAX_NEW_TOKENS = 96
STEERED = "steered"
UNSTEERED = "unsteered"
NOTICE = "notice"
# Ends a reply that stopped at the token limit, not at its own end.
CUT_MARK = " … ✂ (cut at the token limit)"


@dataclass
class ChatTab:
    steered: gr.Chatbot
    unsteered: gr.Chatbot
    unsteered_column: gr.Column
    history: gr.State
    unsteered_log: gr.State
    message: gr.Textbox
    send: gr.Button
    max_new_tokens: gr.Slider
    temperature: gr.Slider
    compare: gr.Checkbox
    clear: gr.Button
    status: gr.Markdown


def _steering_summary(count: int) -> str:
    if count == 0:
        return "no steering vectors active (add some in the Steering tab)"
    return f"{count} steering vector{'s' if count != 1 else ''} active"


class ChatActions:
    """The Chat tab's handlers, bound to one model session."""

    def __init__(self, session: ModelSession) -> None:
        self.session = session

    def send(
        self,
        message: str | None,
        history: Messages | None,
        unsteered_log: Messages | None,
        compare: bool,
        max_new_tokens: Any,
        temperature: Any,
    ) -> Iterator[ChatView]:
        """Stream the steered reply, then (if `compare`) the unsteered one.

        Yields the whole view each time; the states only change once both
        replies are complete, so a refused or failed turn changes nothing.
        """
        history = list(history or [])
        unsteered_log = list(unsteered_log or [])
        text = (message or "").strip()
        unchanged = (gr.update(), gr.update(), gr.update(), gr.update(), gr.update())
        if not text:
            yield (*unchanged, "⚠ Type a message first.")
            return
        try:
            settings = GenerationSettings(
                max_new_tokens=validate.whole("Max new tokens", max_new_tokens),
                temperature=float(temperature),
            )
        except (SteerSwarmError, TypeError, ValueError, OverflowError) as exc:
            yield (*unchanged, fmt.failed("reply", str(exc)))
            return
        conversation = [*history, {"role": "user", "content": text}]
        work = _ReplyWork(self.session, conversation, settings, bool(compare))
        job = ModelJob(self.session.lock, work)
        steered = ""
        unsteered = ""
        notice = ""
        status = ""
        try:
            for kind, item in job.events():
                if kind == WAITING:
                    yield (*unchanged, fmt.WAITING)
                    continue
                part, payload = item
                if part == NOTICE:
                    notice = fmt.notice_prefix(payload)
                    continue
                if part == STEERED:
                    steered = payload
                    status = "Writing the steered reply…"
                else:
                    unsteered = payload
                    status = "Writing the unsteered reply (all vectors off)…"
                yield (
                    compat.to_chatbot([*conversation, _assistant(steered)]),
                    compat.to_chatbot(
                        [*unsteered_log, conversation[-1], _assistant(unsteered)]
                        if compare
                        else unsteered_log
                    ),
                    gr.update(),
                    gr.update(),
                    gr.update(),
                    notice + status,
                )
        except Exception as exc:  # the status line must say what happened
            if not isinstance(exc, SteerSwarmError):
                log.exception("chat reply failed")
            yield (
                compat.to_chatbot(history),
                compat.to_chatbot(unsteered_log),
                gr.update(),
                gr.update(),
                gr.update(),
                fmt.failure("reply", exc),
            )
            return
        steered, unsteered, count, cut = job.result
        history = [*conversation, _assistant(steered + (CUT_MARK if STEERED in cut else ""))]
        if compare:
            shown = unsteered + (CUT_MARK if UNSTEERED in cut else "")
            unsteered_log = [*unsteered_log, conversation[-1], _assistant(shown)]
        done = f"✓ Replied with {_steering_summary(count)}"
        done += "; the unsteered reply is on the right." if compare else "."
        if cut:
            done += (
                f" ✂ The {' and the '.join(sorted(cut))} reply stopped at the token limit "
                f"({settings.max_new_tokens} new tokens), not at its end: raise **Max new "
                "tokens** to read on."
            )
        yield (
            compat.to_chatbot(history),
            compat.to_chatbot(unsteered_log),
            history,
            unsteered_log,
            "",
            notice + done,
        )

    @staticmethod
    def clear() -> ChatView:
        return [], [], [], [], "", "Chat cleared."

    @staticmethod
    def show_unsteered(compare: bool) -> Any:
        return gr.update(visible=bool(compare))


def _assistant(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


class _ReplyWork:
    """The model work of one chat turn, run by a ModelJob under the lock."""

    def __init__(
        self,
        session: ModelSession,
        conversation: Messages,
        settings: GenerationSettings,
        compare: bool,
    ) -> None:
        self.session = session
        self.conversation = conversation
        self.settings = settings
        self.compare = compare

    def __call__(self, emit: Callable[[Any], None]) -> tuple[str, str, int, set[str]]:
        """(steered reply, unsteered reply, active vectors, the replies cut at
        the token limit)."""
        current = self.session.current()
        if current.notice:
            emit((NOTICE, current.notice))
        model, tokenizer = current.loaded.model, current.loaded.tokenizer
        count = len(current.steerer.vectors)
        cut: set[str] = set()
        steered, end = "", ReplyEnd()
        for steered in stream_reply(model, tokenizer, self.conversation, self.settings, end=end):
            emit((STEERED, steered))
        if end.cut:
            cut.add(STEERED)
        unsteered = ""
        if self.compare:
            end = ReplyEnd()
            with current.steerer.unsteered():
                for unsteered in stream_reply(
                    model, tokenizer, self.conversation, self.settings, end=end
                ):
                    emit((UNSTEERED, unsteered))
            if end.cut:
                cut.add(UNSTEERED)
        return steered, unsteered, count, cut


def build(actions: ChatActions) -> ChatTab:
    """Lay out the tab inside the current Blocks context and wire its events."""
    history = gr.State([])
    unsteered_log = gr.State([])
    # Each chat's name sits above it, not on it: the label badge Gradio draws
    # inside a chat covered the text scrolled under it.
    with gr.Row():
        with gr.Column():
            gr.Markdown("**Steered** (the active vectors on)")
            steered = compat.chatbot(
                "Steered", height=420, elem_id="steered-chat", show_label=False
            )
        with gr.Column(visible=False) as unsteered_column:
            gr.Markdown("**Unsteered** (no vectors)")
            unsteered = compat.chatbot(
                "Unsteered (no vectors)", height=420, elem_id="unsteered-chat", show_label=False
            )
    with gr.Row():
        message = gr.Textbox(
            label="Message",
            placeholder="Write a message and press Enter or Send",
            lines=1,
            scale=5,
        )
        send = gr.Button("Send", variant="primary", scale=1)
    with gr.Row():
        max_new_tokens = gr.Slider(
            minimum=1, maximum=1024, value=DEFAULT_MAX_NEW_TOKENS, step=1, label="Max new tokens"
        )
        temperature = gr.Slider(
            minimum=0,
            maximum=2,
            value=0,
            step=0.05,
            label="Temperature",
            info="0 = greedy (the same reply every time)",
        )
        with gr.Column():
            compare = gr.Checkbox(value=False, label="Compare with unsteered")
            clear = gr.Button("Clear")
    status = gr.Markdown("", elem_id="chat-status")

    inputs = [message, history, unsteered_log, compare, max_new_tokens, temperature]
    outputs = [steered, unsteered, history, unsteered_log, message, status]
    send.click(actions.send, inputs, outputs, api_name="chat")
    message.submit(actions.send, inputs, outputs, api_name="chat_submit")
    clear.click(actions.clear, None, outputs, api_name="clear_chat")
    compare.change(actions.show_unsteered, [compare], [unsteered_column], api_name="compare")
    return ChatTab(
        steered=steered,
        unsteered=unsteered,
        unsteered_column=unsteered_column,
        history=history,
        unsteered_log=unsteered_log,
        message=message,
        send=send,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        compare=compare,
        clear=clear,
        status=status,
    )
