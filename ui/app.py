"""The whole UI: `build_tabs` lays the tabs out inside an open Blocks context
(the webui extension's `ui()` calls it), `build_app` makes the standalone app."""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
from gradio.context import Context

from optimize.scoring.task_sources import AllowedTaskSources
from steering.session import ModelSession
from ui import chat_tab, explore_tab, saved_tab, steering_tab
from ui.jobs import JobLimits, JobRegistry
from ui.settings import FormSettings
from ui.style import css_kwargs

log = logging.getLogger(__name__)

TITLE = "steerswarm · activation steering"


@dataclass
class Tabs:
    """The built tabs and their handler objects (for wiring and tests)."""

    steering: steering_tab.SteeringTab
    steering_actions: steering_tab.SteeringActions
    chat: chat_tab.ChatTab | None  # None inside the webui, which has its own chat
    chat_actions: chat_tab.ChatActions | None
    optimize: Any = None  # optimize_tab.OptimizeTab when the optimizer is installed
    optimize_actions: Any = None
    explore: explore_tab.ExploreTab | None = None
    explore_actions: explore_tab.ExploreActions | None = None
    saved: Any = None  # saved_tab.SavedTab when the session has a data folder
    jobs: JobRegistry | None = None  # the app's one job registry, shared by every tab and page

    def refresh_outputs(self) -> list[Any]:
        s = self.steering
        return [s.model_line, s.layer, s.table, s.remove_choice]


WEBUI_CHAT_NOTE = (
    "**Chat in the webui's own Chat tab.** The active steering vectors sit on the "
    "loaded model itself, so every reply there (and from the webui's API) is steered "
    "until you remove them here. After a model is loaded or a LoRA applied (here, in "
    "the Model tab or through the API), the vectors that fit it are on it before its "
    "first reply; this tab says which were dropped."
)


def _build_optimize(
    tabs: Tabs,
    session: ModelSession,
    settings: FormSettings,
    task_sources: AllowedTaskSources | None,
) -> None:
    """The Optimize tab, wired to the Steering tab (it changes the active vectors)."""
    try:
        from ui import optimize_tab
    except ImportError as exc:  # lm-eval or pyswarms missing (e.g. in a trimmed webui env)
        log.warning("the Optimize tab is unavailable: %s", exc)
        gr.Markdown(
            f"⚠ Optimizing needs lm-eval and pyswarms (`pip install -r requirements.txt`): {exc}"
        )
        return
    results = session.data.results_dir if session.data is not None else None
    actions = optimize_tab.OptimizeActions(
        session, results or tabs.steering_actions.save_dir, task_sources, tabs.jobs
    )
    tab = optimize_tab.build(actions, settings)
    tabs.optimize, tabs.optimize_actions = tab, actions
    s = tabs.steering
    applied = [s.table, s.remove_choice, s.status, tab.status, tab.vectors]
    tab.apply.click(
        actions.apply, [tab.result], applied, api_name="apply_best", concurrency_limit=None
    )
    tab.front.apply_point.click(
        actions.front.apply_point, [tab.result, tab.front.point], applied,
        api_name="apply_front_point", concurrency_limit=None,
    )


def _build_explore(
    tabs: Tabs, session: ModelSession
) -> tuple[explore_tab.ExploreTab, explore_tab.ExploreActions]:
    """The Explore tab; its scan's layer window can fill the Optimize form's bounds."""
    actions = explore_tab.ExploreActions(session, tabs.jobs)
    tab = explore_tab.build(actions)
    tabs.explore, tabs.explore_actions = tab, actions
    if tabs.optimize is not None:
        o = tabs.optimize
        tab.use_range.click(
            actions.use_range,
            [tab.layer_range],
            [o.fields["layer_min"], o.fields["layer_max"], tab.status],
        )
    return tab, actions


def build_tabs(
    session: ModelSession,
    save_dir: Path | None = None,
    *,
    webui: bool = False,
    settings: FormSettings | None = None,
    task_sources: AllowedTaskSources | None = None,
    limits: JobLimits | None = None,
) -> Tabs:
    """Build the Steering, Chat, Optimize and Explore tabs inside the current Blocks context.

    With `webui=True` (inside text-generation-webui) there is no Chat tab:
    the webui's own chat is steered, and a note at the top says so.
    `settings` gives the forms their starting values and remembers changes.
    `task_sources` (set by the operator at start, never from the page) are the
    task folders the Optimize tab and the Steering tab's "From a task" offer
    and accept; None: the shipped tasks and lm-eval's registered tasks.
    `limits` (the operator's too): above how long a job asks first and is refused.
    """
    settings = settings or FormSettings()
    enclosing = Context.block  # inside the webui: the tab it opened for us
    if save_dir is None and session.data is not None:
        save_dir = session.data.vectors_dir  # listed on the Saved tab after a restart
    jobs = JobRegistry(limits)  # one per app: every tab and page shares its one running job
    steering_actions = steering_tab.SteeringActions(
        session, save_dir or Path(tempfile.mkdtemp(prefix="steerswarm-")), jobs
    )
    chat_actions = None if webui else chat_tab.ChatActions(session)
    if webui:
        gr.Markdown(WEBUI_CHAT_NOTE, elem_id="steerswarm-webui-note")
    with gr.Tabs():
        with gr.Tab("Steering") as steering_page:
            steering = steering_tab.build(steering_actions, settings, task_sources)
        chat = None
        if chat_actions is not None:
            with gr.Tab("Chat"):
                chat = chat_tab.build(chat_actions)
        tabs = Tabs(steering, steering_actions, chat, chat_actions, jobs=jobs)
        with gr.Tab("Optimize") as optimize_page:
            _build_optimize(tabs, session, settings, task_sources)
        with gr.Tab("Explore") as explore_page:
            explore, explore_actions = _build_explore(tabs, session)
        if session.data is not None:
            with gr.Tab("Saved") as saved_page:
                tabs.saved = saved_tab.build(saved_tab.SavedActions(session, jobs), tabs)
            saved_page.select(tabs.saved.actions.listing, None, [tabs.saved.files])
    steering_page.select(steering_actions.refresh, None, tabs.refresh_outputs()).then(
        steering_actions.status_line, None, [steering.status], api_name=False
    )
    if webui and isinstance(enclosing, gr.Tab):
        # The webui's sidebar shows our tab; coming back to it after the model
        # was unloaded or swapped must not show the old model's facts.
        enclosing.select(steering_actions.refresh, None, tabs.refresh_outputs()).then(
            steering_actions.status_line, None, [steering.status], api_name=False
        )
    explore_page.select(
        explore_actions.vector_choices, [explore.vector], [explore.vector], api_name=False
    ).then(  # the map's plan and estimate with the vectors active now
        explore_actions.map_estimate,
        [explore.vector, explore.layers, explore.strengths, explore.neutral],
        [explore.map_plan], api_name=False,
    )
    if tabs.optimize is not None:
        o, actions = tabs.optimize, tabs.optimize_actions
        # The vectors may have changed in another tab: the choices follow, and
        # the result's card says so when the vectors it tuned are gone.
        optimize_page.select(actions.vector_choices, [o.vectors], [o.vectors]).then(
            actions.result_view, [o.result], o.result_outputs(), api_name=False
        )
        _attach_on_load(tabs)
    _state_on_load(tabs)
    return tabs


def _state_on_load(tabs: Tabs) -> None:
    """Every page that loads (a reload, a second tab, another visitor) shows
    the server's state, not the one from when the app was built: the model
    line, the vectors and the status line (saying when the model is busy and
    with what), and the job the Steering or Explore tab was running, live,
    then its outcome."""
    root = Context.root_block
    if root is None:
        return
    s = tabs.steering
    root.load(
        tabs.steering_actions.refresh, None, tabs.refresh_outputs(),
        api_name=False,  # type: ignore[arg-type]  # stub: str only; False means private
    )
    # No progress shown on these outputs: a page following a job for minutes
    # would show every one of them as pending; the status line says how far it is.
    root.load(
        tabs.steering_actions.attach, None, [s.table, s.remove_choice, s.status],
        api_name=False,  # type: ignore[arg-type]  # stub: str only; False means private
        concurrency_limit=None, show_progress="hidden",
    )
    if tabs.explore is not None and tabs.explore_actions is not None:
        root.load(
            tabs.explore_actions.attach, None, tabs.explore.attached_outputs(),
            api_name=False,  # type: ignore[arg-type]  # stub: str only; False means private
            concurrency_limit=None, show_progress="hidden",
        )


def _attach_on_load(tabs: Tabs) -> None:
    """Every page that loads (a reload, a second tab, another visitor) shows
    the app's optimization: live progress while it runs, its result after."""
    root = Context.root_block
    if root is None:
        return
    tab, actions = tabs.optimize, tabs.optimize_actions
    root.load(
        actions.attach, None, tab.view_outputs(),
        api_name=False,  # type: ignore[arg-type]  # stub: str only; False means private
        concurrency_limit=None,
    ).then(  # the Resume offer as the results folder holds it now (a cancel makes one)
        actions.resume_offer, None, [tab.resume_note, tab.resume], api_name=False, queue=False
    ).then(  # the plan with the vectors active now
        actions.plan, [tab.vectors, *tab.fields.values()], [tab.plan], api_name=False,
        queue=False,
    )


def build_app(
    session: ModelSession,
    save_dir: Path | None = None,
    task_sources: AllowedTaskSources | None = None,
    limits: JobLimits | None = None,
) -> gr.Blocks:
    """The standalone app: a title and the tabs (which refresh on every page load)."""
    return build_app_with_tabs(session, save_dir, task_sources, limits)[0]


def build_app_with_tabs(
    session: ModelSession,
    save_dir: Path | None = None,
    task_sources: AllowedTaskSources | None = None,
    limits: JobLimits | None = None,
) -> tuple[gr.Blocks, Tabs]:
    """The standalone app and its tabs (the API server asks the Optimize tab
    what holds the model while its requests wait)."""
    with gr.Blocks(title=TITLE, **css_kwargs(gr.Blocks.__init__)) as app:
        gr.Markdown(f"## {TITLE}")
        tabs = build_tabs(session, save_dir, task_sources=task_sources, limits=limits)
    return app, tabs
