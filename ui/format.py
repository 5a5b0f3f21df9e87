"""Turning steering data into what the UI shows: table rows, choices, status lines.

Pure functions of plain data; no Gradio and no model access here.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from steering.models import ModelInfo
from steering.vector import SteeringVector

VECTOR_HEADERS = ["#", "Layer", "Coefficient", "Concept prompts", "Contrast prompts", "Norm"]

WAITING = (
    "⏳ Waiting for the model: another job (an optimization, a reply or a vector "
    "change) is using it. This starts as soon as it is free."
)

_CHOICE = re.compile(r"^#(\d+) ")


def _prompts(prompts: Sequence[str], width: int = 80) -> str:
    text = " | ".join(prompts)
    return text if len(text) <= width else text[: width - 1] + "…"


def vector_rows(vectors: Sequence[SteeringVector]) -> list[list[object]]:
    """One table row per active vector, numbered from 1."""
    return [
        [
            i,
            v.layer,
            round(v.coeff, 4),
            _prompts(v.prompts),
            _prompts(v.contrast_prompts) or "—",
            round(v.norm, 2),
        ]
        for i, v in enumerate(vectors, start=1)
    ]


def vector_label(number: int, vector: SteeringVector) -> str:
    """A short one-line name of a vector, e.g. '#2 layer 12 × 4: joy | … vs grief'."""
    return f"#{number} layer {vector.layer} × {vector.coeff:g}: {vector.summary(50)}"


def vector_choices(vectors: Sequence[SteeringVector]) -> list[str]:
    return [vector_label(i, v) for i, v in enumerate(vectors, start=1)]


def choice_index(choice: str | None) -> int | None:
    """The 0-based index named by a `vector_label`, or None."""
    match = _CHOICE.match(choice or "")
    return int(match.group(1)) - 1 if match else None


def vector_count(n: int) -> str:
    if n == 0:
        return "No steering vectors are active: the model is unsteered."
    return f"{n} steering vector{'s' if n != 1 else ''} active."


def model_line(info: ModelInfo | None, problem: str = "") -> str:
    """The line at the top of the tabs that says which model is steered."""
    if info is None:
        return f"**Model:** none — {problem}" if problem else "**Model:** none"
    return (
        f"**Model:** {info.name} · {info.num_layers} layers (0–{info.num_layers - 1}) · "
        f"hidden size {info.hidden_size} · context {info.max_context} tokens"
    )


def failed(action: str, message: str) -> str:
    """Status line for an action that was refused; nothing was changed."""
    return f"⚠️ Could not {action}: {message} Nothing was changed."


def notice_prefix(notice: str) -> str:
    return f"ℹ️ {notice} " if notice else ""
