"""The Optimize tab's layout, wired to the handlers of an OptimizeActions
(ui/optimize_tab.py).

One path through it: what to steer (the vectors), what "better" means (a
task, or concept strength), how long it may take (the time budget), then
**Optimize vectors**; the plan says what that will do. Everything else is
folded under **Advanced** (ui/optimize_form.py). A result opens with its
verdict card and the one action it allows (**Apply best**, or why there is
none); the numbers, the plots, the front and every evaluation follow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import gradio as gr

from ui import compat, format as fmt, front_panel
from ui.model_access import model_facts
from ui.optimize_form import (
    DECIDING,
    NAMES,
    Visibility,
    build_advanced,
    build_up_front,
    goal_update,
    group_columns,
    remember,
)
from ui.settings import FormSettings

if TYPE_CHECKING:
    from ui.optimize_tab import OptimizeActions

INTRO = (
    "Find **where** (the layer) and **how hard** (the strength) to steer: choose the vectors, "
    "what “better” means and how long the search may take, then click **Optimize vectors**. "
    "Each setting the search tries is scored on the loaded model; the best few are checked "
    "again on documents that did not rank them, and a setting is recommended only when that "
    "check bears it out. Everything else has a default that suits a first run (**Advanced**)."
)


def vectors_info(count: int) -> str:
    """The line under "What to steer": what the choice does, or how to get a vector."""
    if not count:
        return (
            "no vector is active yet: make one in the Steering tab (Load example, then Add "
            "steering vector), then come back"
        )
    return (
        "the active vectors whose layer and strength are searched (the others stay on, as "
        "they are, for every setting and the baseline alike)"
    )


@dataclass
class OptimizeTab:
    """The tab's components: the vector selection, the form's fields by
    setting name (optimize/config/table.py), the buttons and the live view."""

    vectors: gr.CheckboxGroup
    fields: dict[str, Any]
    example: gr.Button
    run: gr.Button
    cancel: gr.Button
    progress: gr.HTML
    evaluations: gr.Dataframe
    convergence: gr.Plot
    particle_plot: gr.Plot
    summary: gr.Markdown
    result: gr.State
    result_file: gr.File
    apply: gr.Button
    status: gr.Markdown
    front: front_panel.FrontPanel
    card: gr.Markdown
    plan: gr.Markdown
    advanced: gr.Accordion
    details: gr.Accordion
    groups: list[Any]  # the Advanced section's groups, shown when a field of theirs is
    resume: gr.Button | None = None
    resume_note: gr.Markdown | None = None
    go_on: gr.Button | None = None

    def view_outputs(self) -> list[Any]:
        """The outputs a run's view fills, in the order of optimize_tab.VIEW."""
        front = self.front
        return [
            self.progress, self.evaluations, self.convergence, self.particle_plot, self.summary,
            self.result, self.result_file, self.card, self.apply, front.plot, front.point,
            front.apply_point, self.go_on, self.details, self.status,
        ]

    def result_outputs(self) -> list[Any]:
        """What OptimizeActions.result_view fills (optimize_tab.RESULT_PARTS)."""
        return [self.card, self.summary, self.apply, self.front.point, self.front.apply_point]


def build(actions: OptimizeActions, settings: FormSettings | None = None) -> OptimizeTab:
    """Lay out the tab inside the current Blocks context and wire its events.

    `settings` gives the form's starting values and remembers what the user
    enters."""
    settings = settings or FormSettings()
    info, vectors, _problem = model_facts(actions.session)
    choices = fmt.vector_choices(vectors)
    gr.Markdown(INTRO)
    vector_box = gr.CheckboxGroup(
        choices=choices, value=[v for _label, v in choices], label="What to steer",
        info=vectors_info(len(choices)), elem_id="optimize-vectors",
    )
    fields, values = build_up_front(settings, info, actions.sources)
    with gr.Row():
        run = gr.Button("Optimize vectors", variant="primary", elem_id="optimize-run")
        cancel = gr.Button("Cancel", variant="stop", elem_id="optimize-cancel")
        # The one answer to "this run would take N hours": a button of its own,
        # shown only while a run asks, so a second click of Optimize (or a
        # double click) never gives it.
        go_on = gr.Button("Go on", elem_id="optimize-go-on", visible=False)
    plan = gr.Markdown(
        actions.plan([v for _label, v in choices], *(values[name] for name in NAMES)),
        elem_id="optimize-plan",
    )
    advanced, example = build_advanced(fields, values, actions.sources)
    groups = group_columns(fields)
    fields = {name: fields[name] for name in NAMES}
    remember(settings, fields)
    offer = actions.resume_offer()[0]  # refreshed on every page load and after every run
    with gr.Row():
        resume_note = gr.Markdown(offer, elem_id="optimize-resume-note")
        resume = gr.Button("Resume interrupted run", visible=bool(offer), scale=0)
    progress = gr.HTML(fmt.progress_html(None), elem_id="optimize-progress")
    status = gr.Markdown("", elem_id="optimize-status")
    with gr.Row(equal_height=False):
        with gr.Column(scale=4):
            card = gr.Markdown("", elem_id="optimize-verdict")
        with gr.Column(scale=1, min_width=180):
            apply = gr.Button(
                "Apply best", variant="primary", visible=False, elem_id="optimize-apply"
            )
            result_file = gr.File(label="Result file (JSON)", interactive=False, visible=False)
    # Folded until a run starts: before any run it holds only empty plots.
    with gr.Accordion(
        "Details: the numbers, the plots and every evaluation", open=False,
        elem_id="optimize-details",
    ) as details:
        summary = gr.Markdown("", elem_id="optimize-summary")
        with gr.Row():
            convergence = gr.Plot(label="Convergence", show_label=False, elem_id="convergence-plot")
            particle_plot = gr.Plot(label="Particles", show_label=False, elem_id="particle-plot")
        front = front_panel.build()
        evaluations = gr.Dataframe(
            value=[],
            headers=fmt.EVALUATION_HEADERS,
            label="Evaluations",
            interactive=False,
            elem_id="evaluations",
            **compat.table_height(320),
        )
    result = gr.State(None)
    tab = OptimizeTab(
        vectors=vector_box, fields=fields, example=example, run=run, cancel=cancel,
        progress=progress, evaluations=evaluations, convergence=convergence,
        particle_plot=particle_plot, summary=summary, result=result, result_file=result_file,
        apply=apply, status=status, front=front, card=card, plan=plan, advanced=advanced,
        details=details, groups=groups, resume=resume, resume_note=resume_note, go_on=go_on,
    )
    _wire(actions, tab)
    return tab


def _wire(actions: OptimizeActions, tab: OptimizeTab) -> None:
    form = list(tab.fields.values())
    outputs = tab.view_outputs()
    resumed = [tab.resume_note, tab.resume]
    # No concurrency limit: a second page's click must be answered ("already
    # running", then the running job) rather than queued behind the first run.
    tab.run.click(
        actions.optimize, [tab.vectors, *form], outputs, api_name="optimize",
        concurrency_limit=None,
    ).then(actions.resume_offer, None, resumed, api_name=False, queue=False)
    assert tab.resume is not None and tab.go_on is not None
    tab.resume.click(
        actions.resume, None, outputs, api_name="resume_optimization", concurrency_limit=None
    ).then(actions.resume_offer, None, resumed, api_name=False, queue=False)
    tab.cancel.click(
        actions.cancel, None, [tab.status], api_name="cancel_optimization", concurrency_limit=None
    )
    tab.go_on.click(
        actions.go_on, None, [tab.status], api_name="go_on_optimization", concurrency_limit=None
    )
    tab.example.click(
        actions.example_settings, None, [*form, tab.status], api_name="example_settings"
    )
    # The Advanced fields that apply: shown when a deciding field changes.
    shown = Visibility()
    deciding = [tab.fields[name] for name in DECIDING]
    hidden = [tab.fields[name] for name in shown.outputs] + tab.groups
    for field in deciding:
        field.change(shown, deciding, hidden, api_name=False, queue=False, show_progress="hidden")
    tab.fields["task_folder"].change(
        goal_update, [tab.fields["task_folder"], tab.fields["task"]], [tab.fields["task"]],
        api_name=False, queue=False, show_progress="hidden",
    )
    # The plan, as the command line would print it, whenever the form changes.
    for component in (tab.vectors, *form):
        component.change(
            actions.plan, [tab.vectors, *form], [tab.plan], api_name=False, queue=False,
            show_progress="hidden",
        )
