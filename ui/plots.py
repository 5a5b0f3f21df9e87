"""Matplotlib figures for the Optimize tab (built without pyplot, so no global
figure state and no GUI backend: gr.Plot renders them to PNG)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, MaxNLocator

if TYPE_CHECKING:
    from matplotlib.axis import Axis

    from optimize.run.results import Evaluation, OptimizationResult

_SIZE = (6.0, 3.6)


def integer_ticks(axis: Axis) -> None:
    """Ticks on whole numbers only (layers, iterations): the default locator
    (a MaxNLocator) told so."""
    locator = axis.get_major_locator()
    if isinstance(locator, MaxNLocator):
        locator.set_params(integer=True)

_MARKERS = ("o", "s", "^", "D", "v", "P", "X")
# The page may be light or dark (the webui defaults to dark): a transparent
# figure with mid-grey text and frames reads on both (#6b7280: contrast 4.8:1
# on white, 4.2:1 on the webui's dark background; the lighter grey before was
# hard to read on white).
_INK = "#6b7280"


def _themeless(fig: Figure) -> Figure:
    """Make `fig` transparent, its text and frames mid-grey."""
    fig.patch.set_alpha(0.0)
    for ax in fig.axes:
        ax.set_facecolor("none")
        ax.tick_params(colors=_INK)
        for spine in ax.spines.values():
            spine.set_color(_INK)
        for text in (ax.title, ax.xaxis.label, ax.yaxis.label):
            text.set_color(_INK)
        legend = ax.get_legend()
        if legend is not None:
            legend.get_frame().set_alpha(0.0)
            for text in legend.get_texts():
                text.set_color(_INK)
    return fig


def convergence(
    evaluations: Sequence[Evaluation], baseline: float | None, best: Sequence[float]
) -> Figure:
    """Best score so far (`best`, one per non-baseline evaluation) against the
    number of evaluations, every score as a dot, the unsteered baseline dashed."""
    fig = Figure(figsize=_SIZE, dpi=100, layout="constrained")
    ax = fig.add_subplot()
    scored = [e for e in evaluations if not e.is_baseline]
    xs = list(range(1, len(scored) + 1))
    if scored:
        ax.scatter(xs, [e.score for e in scored], s=18, color="#9ca3af", label="each evaluation")
    if scored and len(best) == len(scored):
        ax.step(xs, list(best), where="post", color="#f97316", linewidth=2,
                label="top score so far")
    if baseline is not None and not math.isnan(baseline):
        ax.axhline(
            baseline, color="#2563eb", linestyle="--", linewidth=1.2, label="unsteered baseline"
        )
    ax.set_xlabel("settings scored")
    ax.set_ylabel("score")
    ax.set_title("Convergence: the top score so far")
    ax.margins(y=0.12)
    if xs:
        ax.set_xlim(0.5, max(xs) + 0.5)
        _whole_ticks(ax.xaxis, 1, max(xs))
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    return _themeless(fig)


def _whole_ticks(axis: Any, low: int, high: int) -> None:
    """Whole-number ticks only (a run of one layer or one setting showed
    0.96, 0.98, 1.00 ...): every number when few, else matplotlib's integers."""
    if high - low <= 10:
        axis.set_major_locator(FixedLocator(list(range(low, high + 1))))
    else:
        axis.set_major_locator(MaxNLocator(integer=True))


def particles(
    evaluations: Sequence[Evaluation],
    vector_numbers: Sequence[int] = (),
    best: Evaluation | None = None,
    unit: str = "alpha",
) -> Figure:
    """Every evaluated particle as a point at (layer, alpha), coloured by score;
    one marker shape per optimized vector, the top candidate ringed. A run
    searched in strength scores alphas (each strength turned into the vector's
    alpha at its layer): the axis says so."""
    fig = Figure(figsize=_SIZE, dpi=100, layout="constrained")
    ax = fig.add_subplot()
    scored = [e for e in evaluations if not e.is_baseline and not math.isnan(e.score)]
    if scored:
        scores = [e.score for e in scored]
        low, high = min(scores), max(scores)
        if low == high:
            low, high = low - 0.5, high + 0.5
        slots = len(scored[0].layers)
        mappable = None
        for slot in range(slots):
            number = vector_numbers[slot] if slot < len(vector_numbers) else slot + 1
            mappable = ax.scatter(
                [e.layers[slot] for e in scored],
                [e.alphas[slot] for e in scored],
                c=scores,
                cmap="viridis",
                vmin=low,
                vmax=high,
                s=46,
                marker=_MARKERS[slot % len(_MARKERS)],
                edgecolors="black",
                linewidths=0.4,
                label=f"vector #{number}",
            )
        if best is not None and not best.is_baseline:
            ax.scatter(
                list(best.layers),
                list(best.alphas),
                s=220,
                facecolors="none",
                edgecolors="#dc2626",
                linewidths=2,
                label="top candidate",
            )
        if mappable is not None:
            fig.colorbar(mappable, ax=ax, label="score")
        ax.legend(loc="best", fontsize=8)
        layers = [layer for e in scored for layer in e.layers]
        ax.set_xlim(min(layers) - 0.6, max(layers) + 0.6)
        _whole_ticks(ax.xaxis, min(layers), max(layers))
        ax.margins(y=0.12)
    ax.set_xlabel("layer")
    if unit == "strength":
        ax.set_ylabel("alpha (the strength tried, at that layer)")
    else:
        ax.set_ylabel("alpha")
    ax.set_title("Every setting tried: layer × alpha, coloured by score")
    ax.grid(alpha=0.3)
    return _themeless(fig)


def front(result: OptimizationResult) -> Figure | None:
    """The run's trade-off: every scored setting at (KL on neutral text, target
    score), the Pareto front as a line with its points numbered as the tab's
    "Point of the front" choices are, the recommendation ringed, the
    target-only best marked, the unsteered baseline (KL 0) and, for the guarded
    objective, the KL budget. None when the run measured no KL."""
    from optimize.guard.objective import KL

    scored = [e for e in result.evaluations if not math.isnan(e.metrics.get(KL, math.nan))]
    if not scored:
        return None
    fig = Figure(figsize=_SIZE, dpi=100, layout="constrained")
    ax = fig.add_subplot()
    ax.scatter(
        [e.metrics[KL] for e in scored], [e.score for e in scored], s=18, color=_INK,
        label="each setting",
    )
    points = result.front
    ax.plot(
        [e.metrics[KL] for e in points], [e.score for e in points], marker="o", color="#f97316",
        linewidth=2, label="Pareto front",
    )
    for number, e in enumerate(points, start=1):
        ax.annotate(
            str(number), (e.metrics[KL], e.score), textcoords="offset points", xytext=(4, 5),
            color="#f97316", fontsize=8,
        )
    ax.scatter([0.0], [result.baseline.score], marker="s", s=40, color="#2563eb",
               label="unsteered baseline")
    target_only = result.target_only_best
    if not math.isnan(target_only.metrics.get(KL, math.nan)):
        ax.scatter([target_only.metrics[KL]], [target_only.score], marker="x", s=80,
                   color="#a855f7", label="best by target alone")
    chosen = result.verdict.recommended
    recommended = None if chosen is None else result.search_evaluation(chosen.setting)
    if recommended is not None:
        ax.scatter([recommended.metrics[KL]], [recommended.score], s=240, facecolors="none",
                   edgecolors="#dc2626", linewidths=2, label="recommended")
    if result.objective == "guarded":
        ax.axvline(result.objective_options.kl_budget, color="#dc2626", linestyle=":",
                   linewidth=1.2, label="KL budget")
    ax.set_xlabel("mean KL from the unsteered model on neutral text (nats/token)")
    ax.set_ylabel(f"target ({result.fitness.metric})")
    ax.set_title("Target vs KL: the Pareto front")
    ax.margins(x=0.08, y=0.12)
    ax.legend(loc="best", fontsize=7)
    ax.grid(alpha=0.3)
    return _themeless(fig)
