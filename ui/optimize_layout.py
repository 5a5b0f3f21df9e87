"""The Optimize tab's layout: the vector selection, the form (built from the
run settings table by ui/optimize_form.py), the buttons and the live view,
wired to the handlers of an OptimizeActions (ui/optimize_tab.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import gradio as gr

from optimize.guard.objective import OBJECTIVES, uses_task
from ui import compat, format as fmt, front_panel
from ui.model_access import model_facts
from ui.optimize_form import build_form
from ui.settings import FormSettings

if TYPE_CHECKING:
    from ui.optimize_tab import OptimizeActions


def plan_line(particles: Any, iterations: Any, limit: Any, objective: Any = None) -> str:
    """The warning shown before a run: how much it scores, and that it holds
    the model, so chat replies (the webui's too) wait until it ends. A field
    that is not a whole positive number leaves the size out (the run's own
    check names it when started). For the concept objective it says what is
    scored instead of a task: the vector's held-out concept and contrast
    prompts, within the KL budget."""
    holds = (
        "It holds the model: chat replies (the webui's too) and vector changes wait until "
        "it ends; the status line shows the time left once the first setting is scored."
    )
    concept = isinstance(objective, str) and objective in OBJECTIVES and not uses_task(objective)
    try:
        p, i, n = int(particles), int(iterations), int(limit)
    except (TypeError, ValueError, OverflowError):
        p = i = n = -1
    if concept:
        scored = (
            "the held-out concept and contrast prompts of the one selected vector (the held-out "
            "share of each list; the vector is rebuilt from the rest), ranked by how much "
            "likelier the concept's become, within the KL budget; the task fields are not used"
        )
        size = f"{p * i} settings ({p} particles × {i} iterations) on " if p > 0 and i > 0 else ""
        return f"**Before you start:** this run scores {size}{scored}. {holds}"
    if p < 1 or i < 1 or n < 1:
        return f"**Before you start:** {holds}"
    return (
        f"**Before you start:** this run ranks {p * i} settings ({p} particles × {i} "
        f"iterations) on the search documents (of at most {n}), then confirms the best few "
        "on documents that did not rank them and checks the pick on held-out documents; "
        f"only a gain the confirmation documents bear out is recommended. {holds}"
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
    resume: gr.Button | None = None
    resume_note: gr.Markdown | None = None
    go_on: gr.Button | None = None


def build(actions: OptimizeActions, settings: FormSettings | None = None) -> OptimizeTab:
    """Lay out the tab inside the current Blocks context and wire its events.

    `settings` gives the form's starting values and remembers what the user
    enters."""
    info, vectors, _problem = model_facts(actions.session)
    choices = fmt.vector_choices(vectors)
    gr.Markdown(
        "Search the **layer** and **alpha** of the chosen vectors with a "
        "particle swarm; each particle is scored by an lm-eval task on the loaded model. "
        "Standard lm-eval tasks need internet for their data; local tasks in the task "
        "folder work offline. With only concept and contrast prompts (no task), choose the "
        "objective **concept**: it finds the strongest setting of one vector that keeps "
        "text fluent."
    )
    vector_box = gr.CheckboxGroup(
        choices=choices, value=[v for _label, v in choices], label="Vectors to optimize"
    )
    fields = build_form(settings or FormSettings(), info, actions.sources)
    with gr.Row():
        example = gr.Button("Use example settings")
        run = gr.Button("Optimize vectors", variant="primary")
        cancel = gr.Button("Cancel", variant="stop", elem_id="optimize-cancel")
        # The one answer to "this run would take N hours": a button of its own,
        # so a second click of Optimize (or a double click) never gives it.
        go_on = gr.Button("Go on", elem_id="optimize-go-on")
    offer = actions.resume_offer()[0]  # refreshed on every page load and after every run
    with gr.Row():
        resume_note = gr.Markdown(offer, elem_id="optimize-resume-note")
        resume = gr.Button("Resume interrupted run", visible=bool(offer), scale=0)
    sized_by = ("particles", "iterations", "limit", "objective")
    size = [fields[name] for name in sized_by]
    plan = gr.Markdown(plan_line(*(f.value for f in size)), elem_id="optimize-plan")
    progress = gr.HTML(fmt.progress_html(None), elem_id="optimize-progress")
    status = gr.Markdown("", elem_id="optimize-status")
    with gr.Row():
        convergence = gr.Plot(label="Convergence", show_label=False, elem_id="convergence-plot")
        particle_plot = gr.Plot(label="Particles", show_label=False, elem_id="particle-plot")
    with gr.Row():
        with gr.Column(scale=3):
            summary = gr.Markdown("", elem_id="optimize-summary")
        with gr.Column(scale=2):
            apply = gr.Button("Apply best", variant="primary")
            result_file = gr.File(label="Result file (JSON)", interactive=False, visible=False)
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

    form = list(fields.values())
    view = [progress, evaluations, convergence, particle_plot, summary, result, result_file, status]
    # No concurrency limit: a second page's click must be answered ("already
    # running", then the running job) rather than queued behind the first run.
    run.click(
        actions.optimize, [vector_box, *form], view, api_name="optimize", concurrency_limit=None
    ).then(
        actions.front.offer, [result], offer_outputs(front, apply), api_name=False, queue=False
    ).then(
        actions.resume_offer, None, [resume_note, resume], api_name=False, queue=False
    )
    resume.click(
        actions.resume, None, view, api_name="resume_optimization", concurrency_limit=None
    ).then(
        actions.resume_offer, None, [resume_note, resume], api_name=False, queue=False
    ).then(
        actions.front.offer, [result], offer_outputs(front, apply), api_name=False, queue=False
    )
    cancel.click(
        actions.cancel, None, [status], api_name="cancel_optimization", concurrency_limit=None
    )
    go_on.click(
        actions.go_on, None, [status], api_name="go_on_optimization", concurrency_limit=None
    )
    example.click(actions.example_settings, None, [*form, status], api_name="example_settings")
    for field in size:
        field.change(  # type: ignore[attr-defined]  # Gradio adds event methods at run time
            plan_line, size, [plan], api_name=False, queue=False
        )
    return OptimizeTab(
        vectors=vector_box,
        fields=fields,
        example=example,
        run=run,
        cancel=cancel,
        progress=progress,
        evaluations=evaluations,
        convergence=convergence,
        particle_plot=particle_plot,
        summary=summary,
        result=result,
        result_file=result_file,
        apply=apply,
        status=status,
        resume=resume,
        resume_note=resume_note,
        front=front,
        go_on=go_on,
    )


def offer_outputs(front: front_panel.FrontPanel, apply: gr.Button) -> list[Any]:
    """What FrontActions.offer fills: the front plot, the point choices, their
    Apply button and "Apply best"."""
    return [front.plot, front.point, front.apply_point, apply]
