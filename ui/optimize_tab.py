"""The Optimize tab: search the layer and alpha of chosen vectors with a particle
swarm scored by lm-eval, watch it live, and apply the best setting.

The run holds the model lock from start to end (in a job thread), so chat and
vector changes wait for it and say so. "Cancel" stops it after the current
evaluation; the active vectors are left exactly as they were until the user
clicks "Apply best".
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from optimize import (
    Evaluation,
    FitnessConfig,
    LmEvalFitness,
    OptimizationCancelled,
    OptimizationResult,
    Progress,
    PsoConfig,
    SearchSpace,
    apply_best,
    check_heldout,
    run_optimization,
)
from optimize.task_sources import SHIPPED_TASKS, AllowedTaskSources
from steering.errors import InvalidInputError, NoModelError, SteerSwarmError
from steering.presets import load_preset
from steering.session import Current, ModelSession
from ui import format as fmt
from ui import plots
from ui.jobs import WAITING, ModelJob
from ui.settings import FormSettings
from ui.steering_tab import SteeringActions

log = logging.getLogger(__name__)

TASKS_DIR = SHIPPED_TASKS
DEFAULT_TASK = "steer_sentiment"

# (progress, evaluations table, convergence plot, particle plot, summary,
#  result state, result file, status)
OptimizeView = tuple[Any, Any, Any, Any, Any, Any, Any, str]


@dataclass
class OptimizeTab:
    vectors: gr.CheckboxGroup
    task: gr.Textbox
    task_folder: gr.Dropdown
    metric: gr.Textbox
    limit: gr.Number
    batch_size: gr.Number
    particles: gr.Number
    iterations: gr.Number
    layer_min: gr.Number
    layer_max: gr.Number
    alpha_min: gr.Number
    alpha_max: gr.Number
    c1: gr.Number
    c2: gr.Number
    w: gr.Number
    seed: gr.Number
    heldout_task: gr.Textbox
    heldout_limit: gr.Number
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


@dataclass(frozen=True)
class RunRequest:
    """Everything "Optimize vectors" was given, validated."""

    choices: tuple[str, ...]
    indices: tuple[int, ...]
    fitness: FitnessConfig
    space: SearchSpace
    pso: PsoConfig
    heldout: FitnessConfig | None = None


def default_layer_range(num_layers: int) -> tuple[int, int]:
    """About the second quarter to the middle of the model, where steering works best."""
    low = min(num_layers - 1, round(num_layers * 0.25))
    high = max(low, min(num_layers - 1, round(num_layers * 0.6)))
    return low, high


def _whole(name: str, value: Any) -> int:
    """A whole number from a gr.Number (which may give a float or None)."""
    if value is None:
        raise InvalidInputError(f"Enter a value for {name}.")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{name} must be a whole number, got {value!r}.") from None
    if not number.is_integer():
        raise InvalidInputError(f"{name} must be a whole number, got {value!r}.")
    return int(number)


def parse_request(
    choices: list[str] | None,
    task: str | None,
    task_folder: str | None,
    metric: str | None,
    limit: Any,
    batch_size: Any,
    particles: Any,
    iterations: Any,
    layer_min: Any,
    layer_max: Any,
    alpha_min: Any,
    alpha_max: Any,
    c1: Any,
    c2: Any,
    w: Any,
    seed: Any,
    heldout_task: str | None = None,
    heldout_limit: Any = None,
    sources: AllowedTaskSources | None = None,
) -> RunRequest:
    """Check the form before anything touches the model. An empty held-out
    task means no held-out scoring (its limit is then not used). The task
    folder must be one of `sources` (default: the shipped tasks, or lm-eval's
    registered tasks): a visitor never picks a folder of code to run.

    Raises:
        InvalidInputError: with a message naming the field (TaskSourceError
            for a task folder that is not allowed).
    """
    chosen = tuple(choices or ())
    if not chosen:
        raise InvalidInputError(
            "Select at least one vector to optimize (add one in the Steering tab first)."
        )
    indices = []
    for choice in chosen:
        index = fmt.choice_index(choice)
        if index is None:
            raise InvalidInputError(f"Unknown vector {choice!r}; refresh the tab.")
        indices.append(index)
    folder = (sources or AllowedTaskSources()).include_path(task_folder)
    fitness = FitnessConfig(
        task=task or "",
        include_path=folder,
        metric=metric or "",
        limit=_whole("Limit", limit),
        batch_size=_whole("Batch size", batch_size),
    )
    space = SearchSpace(
        _whole("Lowest layer", layer_min),
        _whole("Highest layer", layer_max),
        alpha_min,
        alpha_max,
    )
    pso = PsoConfig(
        particles=_whole("Particles", particles),
        iterations=_whole("Iterations", iterations),
        c1=c1,
        c2=c2,
        w=w,
        seed=_whole("Seed", seed),
    )
    heldout = None
    if (heldout_task or "").strip():
        held_limit = _whole("Held-out limit", heldout_limit)
        if held_limit < 1:
            raise InvalidInputError(f"Held-out limit must be 1 or more, got {held_limit}.")
        heldout = FitnessConfig(
            task=heldout_task or "",
            include_path=folder,
            metric=fitness.metric,
            limit=held_limit,
            batch_size=fitness.batch_size,
        )
        check_heldout(fitness, heldout)
    return RunRequest(chosen, tuple(indices), fitness, space, pso, heldout)


class OptimizeActions:
    """The Optimize tab's handlers. One run at a time per app (the model is one)."""

    def __init__(
        self,
        session: ModelSession,
        steering: SteeringActions,
        sources: AllowedTaskSources | None = None,
    ) -> None:
        self.session = session
        self.steering = steering
        self.sources = sources or AllowedTaskSources()
        self._busy = threading.Lock()
        self._cancel = threading.Event()

    # -- views ---------------------------------------------------------------

    def vector_choices(self, selected: list[str] | None = None) -> Any:
        """The active vectors as choices, keeping the still-valid selection
        (all of them when none is). Does not wait while the model is busy."""
        acquire = getattr(self.session.lock, "acquire", None)
        if acquire is not None and not acquire(blocking=False):
            return gr.update()
        try:
            _info, vectors, _problem = self.steering.model_facts()
        finally:
            if acquire is not None:
                self.session.lock.release()  # type: ignore[attr-defined]
        choices = fmt.vector_choices(vectors)
        kept = [c for c in (selected or []) if c in choices]
        return gr.update(choices=choices, value=kept or choices)

    # -- handlers ------------------------------------------------------------

    def optimize(
        self,
        vectors: list[str] | None,
        task: str | None,
        task_folder: str | None,
        metric: str | None,
        limit: Any,
        batch_size: Any,
        particles: Any,
        iterations: Any,
        layer_min: Any,
        layer_max: Any,
        alpha_min: Any,
        alpha_max: Any,
        c1: Any,
        c2: Any,
        w: Any,
        seed: Any,
        heldout_task: str | None = None,
        heldout_limit: Any = None,
    ) -> Iterator[OptimizeView]:
        """Run the search, yielding the live view after every evaluation."""
        keep = (gr.update(),) * 7
        try:
            request = parse_request(
                vectors,
                task,
                task_folder,
                metric,
                limit,
                batch_size,
                particles,
                iterations,
                layer_min,
                layer_max,
                alpha_min,
                alpha_max,
                c1,
                c2,
                w,
                seed,
                heldout_task,
                heldout_limit,
                self.sources,
            )
        except SteerSwarmError as exc:
            yield (*keep, fmt.failed("start the optimization", str(exc)))
            return
        if not self._busy.acquire(blocking=False):
            yield (*keep, "⚠ An optimization is already running. Cancel it or wait for it.")
            return
        try:
            self._cancel.clear()
            yield from self._run(request)
        finally:
            self._busy.release()

    def _run(self, request: RunRequest) -> Iterator[OptimizeView]:
        started = time.perf_counter()
        history: list[Evaluation] = []
        best_so_far: list[float] = []
        last: Progress | None = None
        numbers = [i + 1 for i in request.indices]
        work = _OptimizeWork(self.session, request, self._cancel)
        job = ModelJob(self.session.lock, work)
        no_result = (gr.update(), gr.update())  # result state, result file
        yield (
            fmt.progress_html(None, "Starting…"),
            [],
            None,
            None,
            "",
            *no_result,
            "Starting: loading the task and scoring the unsteered baseline…",
        )
        try:
            for kind, item in job.events():
                if kind == WAITING:
                    yield (
                        fmt.progress_html(None, "Waiting for the model…"),
                        gr.update(),
                        gr.update(),
                        gr.update(),
                        gr.update(),
                        *no_result,
                        fmt.WAITING,
                    )
                    continue
                last = item
                if last.latest is not None:
                    history.append(last.latest)
                    if not last.latest.is_baseline and last.best_score is not None:
                        best_so_far.append(last.best_score)
                elapsed = time.perf_counter() - started
                yield (
                    fmt.progress_html(
                        last, "scoring the held-out task" if last.phase == "heldout" else ""
                    ),
                    fmt.evaluation_rows(history),
                    plots.convergence(history, last.baseline, best_so_far),
                    plots.particles(history, numbers, last.best),
                    "",
                    *no_result,
                    (
                        f"Optimizing ({elapsed:.0f} s). Chat and vector changes wait until "
                        "this run ends; **Cancel** stops it after the current evaluation."
                    ),
                )
        except OptimizationCancelled as exc:
            yield (
                fmt.progress_html(last, "cancelled"),
                *(gr.update(),) * 4,
                *no_result,
                f"✕ {exc} The active vectors are unchanged.",
            )
            return
        except SteerSwarmError as exc:
            yield (
                fmt.progress_html(last, "failed"),
                *(gr.update(),) * 4,
                *no_result,
                fmt.failed("run the optimization", str(exc)),
            )
            return
        except Exception as exc:  # the status line must say what happened
            log.exception("optimization failed")
            yield (
                fmt.progress_html(last, "failed"),
                *(gr.update(),) * 4,
                *no_result,
                fmt.failed(
                    "run the optimization", f"unexpected error {type(exc).__name__}: {exc}."
                ),
            )
            return
        result: OptimizationResult = job.result
        saved = self._save(result)
        done = "✕ Cancelled; showing the best setting so far." if result.cancelled else "✓ Done."
        heldout = result.heldout
        held_line = (
            ""
            if heldout is None
            else f" Held-out {heldout.fitness.task}: best {heldout.best.score:.4g} vs baseline "
            f"{heldout.baseline.score:.4g} ({heldout.gain_points:+.1f} points)."
        )
        yield (
            fmt.progress_html(_final_progress(result), "cancelled" if result.cancelled else "done"),
            fmt.evaluation_rows(result.history),
            plots.convergence(
                result.history,
                result.baseline.score,
                result.running_best(),
            ),
            plots.particles(result.history, numbers, result.best),
            fmt.result_summary(result),
            result,
            gr.update(value=saved, visible=True) if saved is not None else gr.update(),
            (
                f"{done} Best {result.best.score:.4g} vs baseline {result.baseline.score:.4g} "
                f"({result.gain_points:+.1f} points).{held_line} The active vectors are "
                "unchanged until you click **Apply best**."
            ),
        )

    def _save(self, result: OptimizationResult) -> str | None:
        folder = self.steering.save_dir
        if folder is None:
            return None
        try:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            Path(folder).mkdir(parents=True, exist_ok=True)
            return str(result.save(Path(folder) / f"optimization-{stamp}.json"))
        except (OSError, ValueError):
            log.exception("could not save the optimization result")
            return None

    def example_settings(self, name: str = "sentiment") -> tuple[Any, ...]:
        """The preset's search settings put in the form (task, held-out task,
        limits, swarm, layer and alpha bounds, PSO options, seed), then a
        status line. The layer bounds are kept inside the loaded model."""
        fields = (
            "task", "metric", "limit", "batch_size", "particles", "iterations",
            "layer_min", "layer_max", "alpha_min", "alpha_max", "c1", "c2", "w",
            "seed", "heldout_task", "heldout_limit",
        )  # fmt: skip
        try:
            preset = load_preset(name)
        except SteerSwarmError as exc:
            return (*(gr.update(),) * (len(fields) + 1), fmt.failed("load the example", str(exc)))
        values = dict(preset.optimize)
        acquire = getattr(self.session.lock, "acquire", None)
        if acquire is None or acquire(blocking=False):
            try:
                info, _vectors, _problem = self.steering.model_facts()
            finally:
                if acquire is not None:
                    self.session.lock.release()  # type: ignore[attr-defined]
            if info is not None:
                top = info.num_layers - 1
                values["layer_min"] = min(values["layer_min"], top)
                values["layer_max"] = min(values["layer_max"], top)
        folder = str(TASKS_DIR)
        task, *rest = (values[key] for key in fields)
        return (
            task,
            folder,
            *rest,
            (
                f"✓ Filled in the search settings of the example “{preset.title}”: "
                f"{values['particles']} particles × {values['iterations']} iterations on "
                f"{values['limit']} documents of {values['task']}, then the baseline and the "
                f"best setting on {values['heldout_task']}. Click **Optimize vectors**."
            ),
        )

    def cancel(self) -> str:
        if not self._busy.locked():
            return "Nothing to cancel: no optimization is running."
        self._cancel.set()
        return "✕ Cancelling: the run stops after the current evaluation…"

    def apply(self, result: OptimizationResult | None) -> Iterator[tuple[Any, Any, str, str, Any]]:
        """Make the result's best setting the active vectors.

        Yields (steering table, remove dropdown, steering status, optimize
        status, vector choices).
        """
        if result is None:
            message = fmt.failed("apply the best setting", "Run an optimization first.")
            yield gr.update(), gr.update(), gr.update(), message, gr.update()
            return
        applied: list[str] = []

        def work(current: Current) -> str:
            apply_best(current.steerer, result)
            summary = ", ".join(
                f"#{t.vector.index + 1} → layer {t.layer} × {t.alpha:g}"
                for t in result.tuned()
            )
            applied.append(summary)
            return f"✓ Applied the best setting: {summary}. " + fmt.vector_count(
                len(current.steerer.vectors)
            )

        for table, choices, status in self.steering.locked("apply the best setting", work):
            yield (
                table,
                choices,
                status,
                status,
                self.vector_choices(None) if applied else gr.update(),
            )


def _final_progress(result: OptimizationResult) -> Progress:
    held = 0 if result.heldout is None else 2
    done = len(result.history) + held
    return Progress(
        done=done,
        total=done if result.cancelled else 1 + result.pso.evaluations + held,
        best_score=result.best.score,
        baseline=result.baseline.score,
        latest=result.history[-1],
        best=result.best,
    )


class _OptimizeWork:
    """The model work of one run, executed by a ModelJob under the model lock."""

    def __init__(self, session: ModelSession, request: RunRequest, cancel: threading.Event) -> None:
        self.session = session
        self.request = request
        self.cancel = cancel

    def __call__(self, emit: Callable[[Any], None]) -> OptimizationResult:
        steerer = self.session.current().steerer

        def emit_while_current(progress: Any) -> None:
            # Called after every evaluation. The webui can unload or replace
            # its model while we hold the generation lock; stop rather than
            # go on scoring a model that is no longer the one in use.
            if not self.session.still_current(steerer):
                raise NoModelError(
                    f"The model changed during the optimization ({steerer.info.name} is no "
                    "longer the loaded model), so the run stopped; nothing was applied."
                )
            emit(progress)

        labels = fmt.vector_choices(steerer.vectors)
        for choice, index in zip(self.request.choices, self.request.indices):
            if index >= len(labels) or labels[index] != choice:
                raise InvalidInputError(
                    "The active vectors changed since this tab was shown; "
                    "check the selection and start again."
                )
        held = self.request.heldout
        return run_optimization(
            steerer,
            self.request.indices,
            LmEvalFitness(steerer, self.request.fitness),
            self.request.space,
            self.request.pso,
            on_progress=emit_while_current,
            cancel=self.cancel,
            heldout=None if held is None else LmEvalFitness(steerer, held),
        )


def build(actions: OptimizeActions, settings: FormSettings | None = None) -> OptimizeTab:
    """Lay out the tab inside the current Blocks context and wire its events.

    `settings` gives the form's starting values and remembers what the user
    enters."""
    settings = settings or FormSettings()
    info, vectors, _problem = actions.steering.model_facts()
    low, high = default_layer_range(info.num_layers) if info is not None else (0, 0)
    top = info.num_layers - 1 if info is not None else None
    get = settings.get

    def layer_value(key: str, default: int) -> int:
        """A saved layer, within the loaded model's layers."""
        value = get(key, default)
        return value if top is None else min(max(value, 0), top)
    choices = fmt.vector_choices(vectors)
    gr.Markdown(
        "Search the **layer** and **alpha** (coefficient) of the chosen vectors with a "
        "particle swarm; each particle is scored by an lm-eval task on the loaded model. "
        "Standard lm-eval tasks need internet for their data; local tasks in the task "
        "folder work offline."
    )
    vector_box = gr.CheckboxGroup(choices=choices, value=choices, label="Vectors to optimize")
    with gr.Row():
        task = gr.Textbox(
            value=get("optimize_task", DEFAULT_TASK), label="Task", info="lm-eval task or group name"
        )
        folder_choices = actions.sources.choices()
        saved_folder = get("optimize_task_folder", actions.sources.first())
        task_folder = gr.Dropdown(
            choices=folder_choices,
            value=(
                saved_folder
                if saved_folder in [value for _label, value in folder_choices]
                else actions.sources.first()
            ),
            label="Task folder",
            info="task folders the operator allowed, or lm-eval's registered tasks",
            scale=2,
        )
        metric = gr.Textbox(value=get("optimize_metric"), label="Metric")
    with gr.Row():
        limit = gr.Number(
            value=get("optimize_limit"), precision=0, label="Limit", info="documents per evaluation"
        )
        batch_size = gr.Number(value=get("optimize_batch_size"), precision=0, label="Batch size")
        particles = gr.Number(value=get("optimize_particles"), precision=0, label="Particles")
        iterations = gr.Number(value=get("optimize_iterations"), precision=0, label="Iterations")
    with gr.Row():
        layer_min = gr.Number(
            value=layer_value("optimize_layer_min", low), precision=0, label="Lowest layer"
        )
        layer_max = gr.Number(
            value=layer_value("optimize_layer_max", high), precision=0, label="Highest layer"
        )
        alpha_min = gr.Number(value=get("optimize_alpha_min"), label="Lowest alpha")
        alpha_max = gr.Number(value=get("optimize_alpha_max"), label="Highest alpha")
    with gr.Accordion("PSO options", open=False), gr.Row():
        c1 = gr.Number(value=get("optimize_c1"), label="c1 (cognitive)")
        c2 = gr.Number(value=get("optimize_c2"), label="c2 (social)")
        w = gr.Number(value=get("optimize_w"), label="w (inertia)")
        seed = gr.Number(value=get("optimize_seed"), precision=0, label="Seed")
    with gr.Row():
        heldout_task = gr.Textbox(
            value=get("optimize_heldout_task"),
            label="Held-out task",
            info="optional: a task of other documents (same folder and metric); the baseline "
            "and the best setting are scored on it after the search",
            scale=2,
        )
        heldout_limit = gr.Number(
            value=get("optimize_heldout_limit"),
            precision=0,
            label="Held-out limit",
            info="held-out documents scored",
        )
    with gr.Row():
        example = gr.Button("Use example settings")
        run = gr.Button("Optimize vectors", variant="primary")
        cancel = gr.Button("Cancel", variant="stop")
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
    evaluations = gr.Dataframe(
        value=[],
        headers=fmt.EVALUATION_HEADERS,
        label="Evaluations",
        interactive=False,
        elem_id="evaluations",
    )
    result = gr.State(None)

    form = [
        vector_box,
        task,
        task_folder,
        metric,
        limit,
        batch_size,
        particles,
        iterations,
        layer_min,
        layer_max,
        alpha_min,
        alpha_max,
        c1,
        c2,
        w,
        seed,
        heldout_task,
        heldout_limit,
    ]
    for key, component in (
        ("optimize_task", task), ("optimize_task_folder", task_folder),
        ("optimize_metric", metric), ("optimize_limit", limit),
        ("optimize_batch_size", batch_size), ("optimize_particles", particles),
        ("optimize_iterations", iterations), ("optimize_layer_min", layer_min),
        ("optimize_layer_max", layer_max), ("optimize_alpha_min", alpha_min),
        ("optimize_alpha_max", alpha_max), ("optimize_c1", c1), ("optimize_c2", c2),
        ("optimize_w", w), ("optimize_seed", seed),
        ("optimize_heldout_task", heldout_task), ("optimize_heldout_limit", heldout_limit),
    ):  # fmt: skip
        settings.remember(component, key)
    view = [progress, evaluations, convergence, particle_plot, summary, result, result_file, status]
    run.click(actions.optimize, form, view, api_name="optimize")
    cancel.click(actions.cancel, None, [status], api_name="cancel_optimization")
    example.click(
        actions.example_settings,
        None,
        [*form[1:], status],  # every field but the vector selection
        api_name="example_settings",
    )
    return OptimizeTab(
        vectors=vector_box,
        task=task,
        task_folder=task_folder,
        metric=metric,
        limit=limit,
        batch_size=batch_size,
        particles=particles,
        iterations=iterations,
        layer_min=layer_min,
        layer_max=layer_max,
        alpha_min=alpha_min,
        alpha_max=alpha_max,
        c1=c1,
        c2=c2,
        w=w,
        seed=seed,
        heldout_task=heldout_task,
        heldout_limit=heldout_limit,
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
    )
