"""The whole UI: `build_tabs` lays the tabs out inside an open Blocks context
(the webui extension's `ui()` calls it), `build_app` makes the standalone app."""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from steering.session import ModelSession
from ui import chat_tab, steering_tab

log = logging.getLogger(__name__)

TITLE = "steerswarm · activation steering"


@dataclass
class Tabs:
    """The built tabs and their handler objects."""

    steering: steering_tab.SteeringTab
    steering_actions: steering_tab.SteeringActions
    chat: chat_tab.ChatTab
    chat_actions: chat_tab.ChatActions

    def refresh_outputs(self) -> list[gr.components.Component]:
        s = self.steering
        return [s.model_line, s.layer, s.table, s.remove_choice]


def build_tabs(session: ModelSession, save_dir: Path | None = None) -> Tabs:
    """Build the Steering, Chat and Optimize tabs inside the current Blocks context."""
    steering_actions = steering_tab.SteeringActions(
        session, save_dir or Path(tempfile.mkdtemp(prefix="steerswarm-"))
    )
    chat_actions = chat_tab.ChatActions(session)
    with gr.Tabs():
        with gr.Tab("Steering") as steering_page:
            steering = steering_tab.build(steering_actions)
        with gr.Tab("Chat"):
            chat = chat_tab.build(chat_actions)
    tabs = Tabs(steering, steering_actions, chat, chat_actions)
    steering_page.select(steering_actions.refresh, None, tabs.refresh_outputs())
    return tabs


def build_app(session: ModelSession, save_dir: Path | None = None) -> gr.Blocks:
    """The standalone app: a title and the tabs."""
    with gr.Blocks(title=TITLE) as app:
        gr.Markdown(f"## {TITLE}")
        tabs = build_tabs(session, save_dir)
        app.load(tabs.steering_actions.refresh, None, tabs.refresh_outputs())
    return app
