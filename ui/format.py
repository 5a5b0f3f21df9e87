"""Turning steering data into what the UI shows: table rows, choices, status lines.

Pure functions of plain data; no Gradio and no model access here.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the Steering tab must not need the optimizer installed
    from optimize.run.results import Evaluation, OptimizationResult, Progress
    from steering.models import ModelInfo
    from steering.vector import SteeringVector

VECTOR_HEADERS = ["#", "Layer", "Alpha", "Strength", "Concept prompts", "Contrast prompts", "Norm"]

WAITING = (
    "Waiting for the model: another job (an optimization, a reply or a vector "
    "change) is using it. This starts as soon as it is free."
)

# What Markdown (CommonMark, GFM autolinks and strikethrough, Gradio's $$
# LaTeX) could turn into markup, each backslash-escaped to stand for itself:
# these characters anywhere; `_` where it could open or close emphasis (not
# inside a word, so names like no_such_task stay readable); the `:` of `://`,
# the `.` of `www.` and `@` (autolinks); a block marker at the very start.
_MARKDOWN_SPECIAL = re.compile(
    r"[\\`*\[\]!|~$]"
    r"|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])"
    r"|:(?=//)|(?<=www)\.|@"
    r"|^\s*(?:[#+=-]|\d+[.)])",
    re.IGNORECASE,
)


def _escape_markdown(match: re.Match[str]) -> str:
    found = match.group(0)
    return found[:-1] + "\\" + found[-1]


def md(text: object) -> str:
    """`text` made safe to put inside a gr.Markdown (or gr.HTML) string: shown
    exactly as typed, never as markup.

    Every piece of user text (prompts, task and file names, model names,
    error messages that quote input) goes through this before it is
    interpolated into a status line, table or summary: Markdown syntax is
    backslash-escaped (`[link](http://x)`, `![img](http://x)`, `**`, a
    leading `#`, autolinks), then HTML is escaped (`<img onerror=...>` and
    `<script>` become text), and line breaks become spaces so one value
    cannot start a heading or a list of its own.
    """
    flat = " ".join(str(text).splitlines())
    return html.escape(_MARKDOWN_SPECIAL.sub(_escape_markdown, flat), quote=False)


def _prompts(prompts: Sequence[str], width: int = 80) -> str:
    text = " | ".join(prompts)
    return text if len(text) <= width else text[: width - 1] + "…"


def vector_rows(vectors: Sequence[SteeringVector]) -> list[list[object]]:
    """One table row per active vector, numbered from 1."""
    return [
        [
            i,
            v.layer,
            round(v.alpha, 4),
            "—" if v.strength is None else round(v.strength, 3),  # None: an uncalibrated file
            _prompts(v.prompts) or v.summary(80),  # a method without prompts: its inputs
            _prompts(v.contrast_prompts) or "—",
            round(v.norm, 2),
        ]
        for i, v in enumerate(vectors, start=1)
    ]


def vector_label(number: int, vector: SteeringVector) -> str:
    """A short one-line name of a vector, e.g. '#2 layer 12 × 4: joy | … vs grief'.
    For people only: choices carry the vector's id as their value."""
    return f"#{number} layer {vector.layer} × {vector.alpha:g}: {vector.summary(50)}"


def vector_choices(vectors: Sequence[SteeringVector]) -> list[tuple[str, str]]:
    """(label, id) pairs for a Dropdown or CheckboxGroup: the user sees the
    label, the handler receives the id."""
    return [(vector_label(i, v), v.id) for i, v in enumerate(vectors, start=1)]


def vector_count(n: int) -> str:
    if n == 0:
        return "No steering vectors are active: the model is unsteered."
    return f"{n} steering vector{'s' if n != 1 else ''} active."


def model_line(info: ModelInfo | None, problem: str = "") -> str:
    """The line at the top of the tabs that says which model is steered."""
    if info is None:
        return f"**Model:** none — {md(problem)}" if problem else "**Model:** none"
    return (
        f"**Model:** {md(info.name)} · {info.num_layers} layers (0–{info.num_layers - 1}) · "
        f"hidden size {info.hidden_size} · context {info.max_context} tokens"
    )


def failed(action: str, message: str) -> str:
    """Status line for an action that was refused; nothing was changed."""
    return f"⚠ Could not {action}: {md(message)} Nothing was changed."


def failure(action: str, exc: BaseException) -> str:
    """Status line for an action that raised: a typed error's own message
    (written for users), else the unexpected error's type and text."""
    from steering.errors import SteerSwarmError

    if isinstance(exc, SteerSwarmError):
        return failed(action, str(exc))
    return failed(action, f"unexpected error {type(exc).__name__}: {exc}.")


def notice_prefix(notice: str) -> str:
    return f"ℹ {md(notice)} " if notice else ""


# -- Optimize tab -------------------------------------------------------------

EVALUATION_HEADERS = [
    "Iteration",
    "Particle",
    "Layers",
    "Alphas",
    "Score",
    "± stderr",
    "Seconds",
    "Cached",
]


def _score(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "—"
    return f"{value:.4g}"


def evaluation_rows(evaluations: Sequence[Evaluation]) -> list[list[object]]:
    """One row per evaluation, newest first; the baseline reads 'baseline'."""
    return [
        [
            "baseline" if e.is_baseline else e.iteration + 1,
            "—" if e.is_baseline else e.particle + 1,
            ", ".join(str(layer) for layer in e.layers) or "no steering",
            ", ".join(f"{alpha:g}" for alpha in e.alphas) or "—",
            _score(e.score),
            _score(e.stderr),
            round(e.seconds, 2),
            "yes" if e.cached else "",
        ]
        for e in reversed(evaluations)
    ]


def progress_html(progress: Progress | None, note: str = "") -> str:
    """A progress bar (inline styles only, so it looks the same in every Gradio)."""
    if progress is None:
        fraction, text = 0.0, note or "Not started."
    else:
        fraction = progress.fraction
        text = (
            f"{progress.done} of {progress.total} evaluations · top score so far "
            f"{_score(progress.best_score)} · unsteered baseline {_score(progress.baseline)}"
        )
        if note:
            text += f" · {note}"
    percent = max(0.0, min(100.0, 100.0 * fraction))
    return (
        '<div id="optimize-progress-bar" role="progressbar" '
        f'aria-valuenow="{percent:.0f}" aria-valuemin="0" aria-valuemax="100" '
        'style="width:100%;height:14px;border-radius:7px;'
        'background:rgba(128,128,128,0.3);overflow:hidden">'
        f'<div style="width:{percent:.1f}%;height:100%;background:#f97316"></div></div>'
        f'<div style="margin-top:6px;font-size:0.95em">{html.escape(text)}</div>'
    )


def phase_note(phase: str) -> str:
    """What the progress line adds in a phase of a run (Progress.phase)."""
    return {
        "confirm": "confirming the best settings on documents that did not rank them",
        "heldout": "checking the pick on the held-out documents",
    }.get(phase, "")


# The card's title per verdict kind (the sentences under it are the verdict's own).
_CARD_TITLES = {
    "recommended": "✓ Recommended",
    "cancelled": "✕ Cancelled: nothing to apply",
}
# The card's jargon, explained in a note under it (ui/glossary.py).
_CARD_TERMS = ("KL", "confirmation documents", "held-out documents", "p")


def gone_vectors(result: OptimizationResult, active_ids: Sequence[str] | None) -> list[str]:
    """The vectors `result` tuned that are no longer active (described for
    people), given the ids of the active vectors; [] when they all are, or
    when the active vectors are not known (`active_ids` None)."""
    if active_ids is None:
        return []
    active = set(active_ids)
    return [
        record.describe()
        for record in result.vectors
        if record.vector_id is not None and record.vector_id not in active
    ]


def verdict_card(result: OptimizationResult, gone: Sequence[str] = ()) -> str:
    """The verdict card at the top of a result, in Markdown: a title, then the
    verdict's own sentences (the command line prints the same lines, and the
    result file holds them), then a note explaining its jargon. `gone`: the
    tuned vectors that are no longer active (then there is nothing to apply)."""
    from ui import glossary

    verdict = result.verdict
    title = _CARD_TITLES.get(verdict.kind, "Nothing to apply")
    if result.cancelled and verdict.recommended is None:
        title = _CARD_TITLES["cancelled"]
    lines = [f"### {title}", md(verdict.headline)]
    if verdict.details or verdict.advice:
        lines.append("")
        lines += [f"- {md(sentence)}" for sentence in verdict.details]
        if verdict.advice:
            lines.append(f"- **Next:** {md(verdict.advice)}")
    if gone:
        many = len(gone) != 1
        lines += [
            "",
            (
                f"⚠ The vector{'s' if many else ''} this run tuned "
                f"({'; '.join(md(g) for g in gone)}) {'are' if many else 'is'} no longer active "
                "(removed, reset or replaced since): there is nothing to apply. Restore "
                f"{'them' if many else 'it'} from a vector file to apply this result."
            ),
        ]
    elif verdict.recommended is not None:
        lines += ["", "Click **Apply best** to make this setting the active vectors."]
    explained = glossary.note(glossary.terms_in(verdict.text, _CARD_TERMS))
    if explained:
        lines += ["", f"<small>{explained}</small>"]
    return "\n".join(lines)


def result_summary(
    result: OptimizationResult, active_ids: Sequence[str] | None = None
) -> str:
    """The numbers behind the verdict card, in Markdown: what was scored, the
    baseline, the top candidate, the confirmation and held-out checks, which
    vectors were tuned and the evaluations (the count the progress bar
    counted to). `active_ids` (the active vectors' ids, None: not known): a
    tuned vector no longer active is named as it was, marked gone."""
    from optimize.guard.objective import KL, TargetObjective
    from optimize.run.report import (
        evaluations_line,
        gain_text,
        paired_text,
        scored_text,
        setting_text,
    )

    verdict = result.verdict
    best, base = result.best, result.baseline
    kl = best.metrics.get(KL, math.nan)
    # guarded and concept rank within the KL budget
    guarded = result.objective != TargetObjective.name
    lines = [
        f"#### The numbers behind the verdict{' (cancelled run)' if result.cancelled else ''}",
        (
            f"- **Task:** {md(result.fitness.task)} · metric **{md(result.metric)}** "
            f"({'higher' if result.higher_is_better else 'lower'} is better) · ranked on "
            f"{md(scored_text(result))}"
        ),
        f"- **Objective:** {md(result.objective)}"
        + (f" (KL budget {result.objective_options.kl_budget:g})" if guarded else ""),
        f"- **Unsteered baseline:** {_score(base.score)} ± {_score(base.stderr)}",
        (
            f"- **Top candidate on the search documents:** {_score(best.score)} ± "
            f"{_score(best.stderr)} ({gain_text(result)}) at {md(setting_text(best))}"
            + ("" if math.isnan(kl) else f" · KL {kl:.3f}")
        ),
    ]
    confirmation = result.confirmation
    if confirmation is not None:
        lines.append(f"- **Confirmation:** {md(confirmation.documents)}")
        for index, (finalist, test) in enumerate(
            zip(confirmation.finalists, confirmation.tests, strict=True)
        ):
            outcome = confirmation.outcome_text(index)
            lines.append(f"  - {md(setting_text(finalist))}: {paired_text(test, outcome)}")
    heldout = result.heldout
    if heldout is not None:
        lines += [
            (
                f"- **Held-out task:** {md(heldout.fitness.task)} · {heldout.samples} documents "
                "the search never saw"
                if result.split is None or result.split.fraction == 0
                else f"- **Held-out:** {md(heldout.documents)}, never scored during the search"
            ),
            (
                f"  - baseline {_score(heldout.baseline.score)} · {md(setting_text(heldout.best))} "
                f"{_score(heldout.best.score)} (**{heldout.gain_points:+.1f} points**)"
            ),
        ]
        if heldout.paired is not None:
            lines.append(f"  - paired: {paired_text(heldout.paired)}")
    chosen = verdict.recommended or verdict.candidate or best
    gone = set(gone_vectors(result, active_ids))
    for tuned in result.tuned_setting(chosen.setting):
        record = tuned.vector
        described = record.describe()
        if described in gone:
            name = f"The vector made from {md(described)} (no longer active)"
        else:
            name = f"**Vector #{record.index + 1}** ({md(described)})"
        lines.append(
            f"- {name}: layer {record.layer} × {record.alpha:g} → "
            f"**layer {tuned.layer} × {tuned.alpha:g}**"
        )
    lines.append(f"- {md(evaluations_line(result))} Seed {result.seed}.")
    if verdict.recommended is not None and not gone:
        lines.append(
            "\nAnother **point of the front** (below the plots) trades a little more effect "
            "for more KL, or less."
        )
    return "\n".join(lines)
