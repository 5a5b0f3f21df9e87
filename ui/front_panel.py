"""The Optimize tab's result trade-off: target against KL with the Pareto front
drawn and the recommendation marked, and applying a setting of the result:
the recommended one ("Apply best") or any point of the front.

The recommendation is one choice among several the run found; a user who
wants a little more effect (and pays more KL) or less (and stays closer to
the unsteered model) picks another point of the front. Points are chosen by
their position in the result's front (a number), never by their label.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import gradio as gr

from optimize import ApplyRefused, Evaluation, OptimizationResult
from optimize.guard.objective import KL
from optimize.run.apply_rule import apply_result, gain_refusal, gained, refusal
from optimize.scoring.placing import position_of
from steering import validate
from steering.budget import WorkEstimate, estimate_moves
from steering.session import Current, ModelSession
from ui import format as fmt, plots
from ui.jobs import JobRegistry
from ui.model_access import VectorView
from ui.model_jobs import APPLY, ModelJobs, busy, changed_vectors, vector_views

# (steering table, remove dropdown, steering status, optimize status, vector choices)
ApplyView = tuple[Any, Any, Any, str, Any]


def point_label(number: int, evaluation: Evaluation, recommended: bool) -> str:
    """How a point of the front is offered: its number on the plot, score, KL, setting."""
    setting = ", ".join(
        f"layer {layer} × {alpha:g}"
        for layer, alpha in zip(evaluation.layers, evaluation.alphas, strict=True)
    )
    return (
        f"{number} · score {evaluation.score:.4g} · KL {evaluation.metrics[KL]:.3f} · {setting}"
        + (" (recommended)" if recommended else "")
    )


def _same(a: Evaluation, b: Evaluation | None) -> bool:
    """Whether two evaluations are one setting: a recommendation may be a later,
    cached visit of the front's point, and a loaded result's `best` is a copy."""
    return b is not None and (
        (tuple(a.layers), tuple(a.alphas)) == (tuple(b.layers), tuple(b.alphas))
    )


def best_offer(result: OptimizationResult | None) -> Any:
    """Offer "Apply best" only for a result whose verdict recommends a setting
    (none before any run: there is nothing to apply yet)."""
    return gr.update(visible=result is not None and gained(result))


class FrontActions:
    """Shows a result's front and applies its settings to the active vectors.

    `vector_choices` refreshes the Optimize tab's vector selection after an
    apply (the applied vectors keep their ids, but their labels change).
    Applying is a job of the app (moving a task vector to a new layer
    rebuilds it from its documents), decided by the one apply rule."""

    def __init__(
        self,
        session: ModelSession,
        vector_choices: Callable[[Any], Any],
        jobs: JobRegistry | None = None,
    ) -> None:
        self.session = session
        self.vector_choices = vector_choices
        self.jobs = ModelJobs(session, jobs)

    @staticmethod
    def offer(result: OptimizationResult | None) -> tuple[Any, Any, Any, Any]:
        """(front plot, point choices, "Apply this point" button, "Apply best"
        button) for `result`: the choices are the front's points by their
        number on the plot (from 1: a value of 0 shows as no choice in Gradio's
        dropdown), the recommended one selected. Both buttons only for a real gain."""
        # With no gain over the unsteered model nothing is offered (an honest result):
        # the plot still shows the trade-off that was searched.
        front = [] if result is None or not gained(result) else result.front
        if result is None or not front:
            hidden = gr.update(choices=[], value=None, visible=False)
            figure = None if result is None else plots.front(result)
            return figure, hidden, gr.update(visible=False), best_offer(result)
        recommended = result.verdict.recommended
        marked = [_same(e, recommended) for e in front]
        choices = [
            (point_label(number, e, mark), number)
            for number, (e, mark) in enumerate(zip(front, marked, strict=True), start=1)
        ]
        chosen = marked.index(True) + 1 if any(marked) else None
        return (
            plots.front(result),
            gr.update(choices=choices, value=chosen, visible=True),
            gr.update(visible=True),
            best_offer(result),
        )

    def apply_best(self, result: OptimizationResult | None) -> Iterator[ApplyView]:
        """Make the result's recommended setting the active vectors."""
        recommended = None if result is None else result.verdict.recommended
        chosen = (
            None
            if result is None or recommended is None
            else result.search_evaluation(recommended.setting)
        )
        yield from self._apply(result, chosen, "apply the best setting", "the best setting")

    def apply_point(self, result: OptimizationResult | None, index: Any) -> Iterator[ApplyView]:
        """Make point number `index` (from 1, as offered and plotted) of the
        result's front the active vectors, whether or not it is the recommended one."""
        action = "apply the point of the front"
        if result is None:
            yield self._refused(action, "Run an optimization first.")
            return
        no_gain = gain_refusal(result)  # the rule's answer before the front's numbering
        if no_gain is not None:
            yield self._refused(action, no_gain)
            return
        front = result.front
        if index is None or index == "":
            yield self._refused(action, "Choose a point of the front first.")
            return
        if (
            isinstance(index, bool)
            or not isinstance(index, (int, float))
            or not float(index).is_integer()
            or not 1 <= int(index) <= len(front)
        ):
            yield self._refused(
                action,
                f"There is no point {validate.typed(index)} on this run's front; "
                "choose one of its points.",
            )
            return
        number = int(index)
        yield from self._apply(result, front[number - 1], action, f"point {number} of the front")

    @staticmethod
    def _refused(action: str, why: str, escaped: bool = False) -> ApplyView:
        line = why if escaped else fmt.failed(action, why)
        return gr.update(), gr.update(), gr.update(), line, gr.update()


    def _apply(
        self,
        result: OptimizationResult | None,
        evaluation: Evaluation | None,
        action: str,
        what: str,
    ) -> Iterator[ApplyView]:
        """Apply `evaluation` of `result` as a job: the apply rule decides
        first (its reason is the status when it refuses), then the moved
        vectors are rebuilt and made active."""
        if result is None:
            yield self._refused(action, "Run an optimization first.")
            return
        no_gain = gain_refusal(result)  # said at once, even while the model is busy
        if no_gain is not None or evaluation is None:
            yield self._refused(action, no_gain or "That setting is not one this run scored.")
            return
        job = self.jobs.start(
            f"Applying {what}",
            APPLY,
            _ApplyPlan(result, evaluation),
            _ApplyWork(self.session, result, evaluation, what),
        )
        if job is None:
            yield self._refused(action, busy(self.jobs.registry.running), escaped=True)
            return
        applied = False
        for table, choices, status in vector_views(job, action):
            applied = applied or status.startswith("✓")
            yield (
                table,
                choices,
                status,
                status,
                self.vector_choices(None) if applied else gr.update(),
            )


class _ApplyPlan:
    """An apply job's plan: the apply rule (its refusal ends the job with its
    reason), then the cost of rebuilding the vectors that move."""

    def __init__(self, result: OptimizationResult, evaluation: Evaluation) -> None:
        self.result, self.evaluation = result, evaluation

    def __call__(self, current: Current) -> WorkEstimate:
        steerer = current.steerer
        why = refusal(self.result, self.evaluation, steerer.info, steerer.vectors)
        if why is not None:
            raise ApplyRefused(why)
        moves = [
            (steerer.vectors[position_of(steerer.vectors, t.vector)], t.layer)
            for t in self.result.tuned_setting(self.evaluation.setting)
        ]
        return estimate_moves(steerer, moves)


class _ApplyWork:
    """An apply job's work: the result's setting made the active vectors."""

    def __init__(
        self, session: ModelSession, result: OptimizationResult, evaluation: Evaluation, what: str
    ) -> None:
        self.session, self.result, self.evaluation, self.what = session, result, evaluation, what

    def __call__(self, current: Current, _emit: Any, _control: Any) -> VectorView:
        apply_result(current.steerer, self.result, self.evaluation)
        summary = ", ".join(
            f"#{t.vector.index + 1} → layer {t.layer} × {t.alpha:g}"
            for t in self.result.tuned_setting(self.evaluation.setting)
        )
        count = fmt.vector_count(len(current.steerer.vectors))
        return changed_vectors(
            self.session, current, f"✓ Applied {self.what}: {summary}. {count}"
        )


@dataclass
class FrontPanel:
    """The front plot, the choice of a point and its Apply button."""

    plot: gr.Plot
    point: gr.Dropdown
    apply_point: gr.Button


def build() -> FrontPanel:
    """Lay the panel out in the current Blocks context (wired by the caller:
    applying changes the Steering tab's components too)."""
    plot = gr.Plot(label="Target vs KL", show_label=False, elem_id="front-plot")
    with gr.Row():
        point = gr.Dropdown(
            choices=[],
            value=None,
            label="Point of the front",
            info="Any point of the trade-off, numbered as on the plot; the recommended one "
            "is selected.",
            visible=False,
            scale=4,
            elem_id="front-point",
        )
        apply_point = gr.Button("Apply this point", visible=False, scale=1)
    return FrontPanel(plot, point, apply_point)
