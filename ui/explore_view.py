"""What the Explore tab shows, from plain data: matplotlib figures (built
without pyplot, so no global state; transparent backgrounds and mid-grey text,
so they read on Gradio's light and dark themes alike), table rows and choices.
No Gradio and no model access here."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from matplotlib.figure import Figure

from steering.errors import InvalidInputError
from steering.validate import typed
from ui.plots import integer_ticks

if TYPE_CHECKING:
    from steering.explore import LayerScan, LogitLens
    from steering.explore_map import MapCell, MapGrid

_INK = "#6b7280"  # mid-grey that reads on light and dark pages (the lighter one did not)
_SIZE = (7.0, 3.2)


def _figure(size: tuple[float, float] = _SIZE) -> Figure:
    fig = Figure(figsize=size, dpi=100, layout="constrained")
    fig.patch.set_alpha(0.0)
    return fig


def _style(ax, title: str, xlabel: str, ylabel: str) -> None:
    ax.set_facecolor("none")
    ax.set_title(title, color=_INK)
    ax.set_xlabel(xlabel, color=_INK)
    ax.set_ylabel(ylabel, color=_INK)
    ax.tick_params(colors=_INK)
    for spine in ax.spines.values():
        spine.set_color(_INK)


def scan_bars(scan: LayerScan, label: str) -> Figure:
    """Separation per layer as bars, the most separated window highlighted."""
    fig = _figure()
    ax = fig.add_subplot()
    layers = list(range(len(scan.scores)))
    colors = ["#f97316" if scan.low <= i <= scan.high else "#60a5fa" for i in layers]
    ax.bar(layers, scan.scores, color=colors)
    ax.axvspan(
        scan.low - 0.5, scan.high + 0.5, color="#f97316", alpha=0.12, label="most separated layers"
    )
    ax.axhline(0, color=_INK, linewidth=0.8)
    integer_ticks(ax.xaxis)
    ax.legend(loc="best", fontsize=8)
    _style(ax, "Layer scan: how far concept and contrast prompts separate", "layer", label)
    ax.grid(axis="y", alpha=0.25)
    return fig


def _grid_values(grid: MapGrid, cells: Sequence[MapCell], field: str) -> list[list[float]]:
    found = {(c.layer, c.strength): getattr(c, field) for c in cells}
    return [[found.get((layer, s), math.nan) for s in grid.strengths] for layer in grid.layers]


def heatmaps(grid: MapGrid, cells: Sequence[MapCell]) -> Figure:
    """Log-likelihood gain and KL side by side over layers x strengths;
    cells not computed yet stay blank."""
    fig = _figure((9.0, 3.8))
    panels = (
        ("gain", "Concept log-likelihood gain (nats/token)", "RdBu"),
        ("kl", "KL to unsteered on neutral text (nats/token)", "magma"),
    )
    for index, (field, title, cmap) in enumerate(panels):
        ax = fig.add_subplot(1, 2, index + 1)
        values = _grid_values(grid, cells, field)
        finite = [v for row in values for v in row if not math.isnan(v)]
        kwargs: dict[str, Any] = {}
        if field == "gain" and finite:
            bound = max(abs(v) for v in finite) or 1.0
            kwargs = {"vmin": -bound, "vmax": bound}
        image = ax.imshow(values, aspect="auto", origin="lower", cmap=cmap, **kwargs)
        ax.set_xticks(range(len(grid.strengths)), [f"{s:g}" for s in grid.strengths])
        ax.set_yticks(range(len(grid.layers)), [str(layer) for layer in grid.layers])
        _style(ax, title, "strength (× layer's activation norm)", "layer")
        ax.title.set_fontsize(9)
        bar = fig.colorbar(image, ax=ax)
        bar.ax.tick_params(colors=_INK)
    return fig


def norm_bars(norms: Sequence[float], layer: int) -> Figure:
    """The direction's norm when recaptured at each layer; the vector's own layer marked."""
    fig = _figure()
    ax = fig.add_subplot()
    colors = ["#f97316" if i == layer else "#60a5fa" for i in range(len(norms))]
    ax.bar(range(len(norms)), list(norms), color=colors)
    integer_ticks(ax.xaxis)
    _style(ax, "Direction norm per layer (orange: the vector's layer)", "layer", "norm")
    ax.grid(axis="y", alpha=0.25)
    return fig


# ------------------------------------------------------------------ tables


def numbers(text: str | None, what: str, cast: Callable[[str], Any]) -> tuple[Any, ...]:
    """Comma- or space-separated numbers; () for a blank field."""
    parts = (text or "").replace(",", " ").split()
    try:
        return tuple(cast(p) for p in parts)
    except ValueError:
        raise InvalidInputError(
            f"{what} must be numbers separated by commas, got {typed(text)}."
        ) from None


def cell_name(cell: MapCell) -> str:
    return f"layer {cell.layer} · strength {cell.strength:g}"


def cell_rows(cells: Sequence[MapCell]) -> list[list[float]]:
    return [
        [c.layer, c.strength, round(c.alpha, 4), round(c.gain, 4), round(c.kl, 4)] for c in cells
    ]


def cell_choices(cells: Sequence[MapCell], key: Callable[[MapCell], str]) -> list[tuple[str, str]]:
    """(label, key) per cell, for the apply and compare dropdowns."""
    return [(f"{cell_name(c)} (alpha {c.alpha:.3g})", key(c)) for c in cells]


def cosine_rows(matrix: Sequence[Sequence[float]]) -> tuple[list[list[Any]], list[str]]:
    """(rows, headers) of the cosine table, vectors numbered as in the Steering tab."""
    names = [f"#{i}" for i in range(1, len(matrix) + 1)]
    rows = [[name, *(round(x, 3) for x in row)] for name, row in zip(names, matrix, strict=True)]
    return rows, ["", *names]


def lens_token(text: str) -> str:
    """A token as the lens table shows it: a leading space as ␣ (so "␣joy" is a
    word and "ful" the end of one), other whitespace escaped."""
    shown = text.replace("\n", "\\n").replace("\t", "\\t")
    return "␣" + shown[1:] if shown.startswith(" ") else shown


def lens_rows(lens: LogitLens) -> list[list[Any]]:
    return [
        [lens_token(p.text), round(p.logit, 2), lens_token(s.text), round(s.logit, 2)]
        for p, s in zip(lens.promoted, lens.suppressed, strict=True)
    ]
