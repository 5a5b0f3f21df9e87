"""What a run will do, said before it scores anything, in one wording for the
command line and the Optimize tab.

The command line knows its documents once the run is assembled
(`PlanSizes.of_plan`); the tab must say it while the form is filled in, so it
counts the task's documents without a model (`planned_sizes`,
optimize/scoring/documents.py) and splits them as the run will. Both give a
`PlanSizes` to `plan_lines`, so the plan says the same thing in both places,
and its evaluation count is the one the progress bar counts to
(`RunPlan.total`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from optimize.guard.split import CONFIRM, HELDOUT, SEARCH, smallest_confirmable_gain

if TYPE_CHECKING:
    from optimize.run.optimization import RunPlan
    from optimize.run.settings import RunSettings

# Above this many points, the plan warns that only a large gain can be confirmed.
LARGE_GAIN_POINTS = 25


@dataclass(frozen=True)
class PlanSizes:
    """How much a run scores. Document counts are None when not known before
    the run starts (a task of lm-eval's registry); `settings` is None when a
    time budget decides how many fit; `heldout` 0 when nothing is held out.
    For concept strength, `search` counts the vector's held-out prompts."""

    search: int | None
    confirm: int | None
    heldout: int | None
    settings: int | None
    finalists: int
    scores_task: bool = True

    @property
    def evaluations(self) -> int | None:
        """Evaluations of a full run (RunPlan.total): the baseline, the
        settings, the baseline and the finalists on the confirmation
        documents, the baseline and the pick on the held-out ones. None while
        a time budget decides the settings."""
        if self.settings is None:
            return None
        if not self.scores_task:
            return 1 + self.settings
        confirm = 0 if self.confirm == 0 else 1 + self.finalists
        return 1 + self.settings + confirm + (0 if self.heldout == 0 else 2)

    @classmethod
    def of_plan(cls, settings: RunSettings, plan: RunPlan) -> PlanSizes:
        """The sizes of an assembled run."""
        return cls(
            search=int(plan.fitness.samples),
            confirm=0 if plan.confirm is None else int(plan.confirm.samples),
            heldout=0 if plan.heldout is None else int(plan.heldout.samples),
            settings=None if plan.budget_seconds > 0 else plan.pso.evaluations,
            finalists=plan.finalists,
            scores_task=plan.scores_task,
        )


def _split_counts(settings: RunSettings, counts: Sequence[int]) -> dict[str, int]:
    split = settings.split
    if split is None:
        return {SEARCH: sum(counts), CONFIRM: 0, HELDOUT: 0}
    totals = {SEARCH: 0, CONFIRM: 0, HELDOUT: 0}
    for count in counts:  # each subtask of a group is split on its own, as the run does
        for side, n in split.counts(count).items():
            totals[side] += n
    return totals


def planned_sizes(
    settings: RunSettings,
    counts: Sequence[int] | None,
    heldout_counts: Sequence[int] | None = None,
    concept_prompts: tuple[int, int] | None = None,
) -> PlanSizes:
    """The sizes of a run of `settings` before it is assembled: `counts` are
    the documents of each subtask the run uses (within its limit), None when
    unknown; `heldout_counts` the same for a held-out task; for concept
    strength, `concept_prompts` is (concept, contrast) prompts of the chosen
    vector. Raises InvalidInputError, as the run would, for a task too small
    to split."""
    budgeted = float(settings["budget"]) > 0
    evaluations = None if budgeted else settings.pso.evaluations
    if not settings.scores_task:
        held = None
        if concept_prompts is not None:
            from optimize.scoring.concept import held_out_count

            share = float(settings["holdout_fraction"])
            held = sum(held_out_count(n, share) for n in concept_prompts)
        return PlanSizes(held, 0, 0, evaluations, settings.finalists, scores_task=False)
    parts = None if counts is None else _split_counts(settings, counts)
    if settings.heldout is not None:
        heldout = None if heldout_counts is None else sum(heldout_counts)
    else:
        heldout = None if parts is None else parts[HELDOUT]
    return PlanSizes(
        search=None if parts is None else parts[SEARCH],
        confirm=None if parts is None else parts[CONFIRM],
        heldout=heldout,
        settings=evaluations,
        finalists=settings.finalists,
    )


def condition_line(others: int) -> str:
    """How the baseline and the settings are scored, with `others` active
    vectors the run does not tune: the same condition for both."""
    if not others:
        return "The baseline is the model with no steering; each setting adds only its vectors."
    return (
        f"The other {others} active vector(s) stay on for the baseline and for every setting "
        "alike: a setting's gain is what the tuned vectors add to them."
    )


def _n(count: int | None, what: str) -> str:
    """"21 search documents", or the documents without a number when unknown."""
    if count is None:
        return f"the {what} documents"
    return f"{count} {what} document{'' if count == 1 else 's'}"


def _scored(settings: RunSettings, sizes: PlanSizes) -> str:
    """The evaluations and what they are: "Scores at most 19 evaluations: the
    unsteered baseline and 12 settings (...)"."""
    pso = settings.pso
    if sizes.settings is None:
        minutes = float(settings["budget"])
        return (
            f"Scores the unsteered baseline and as many settings as fit in "
            f"{minutes:g} minute{'' if minutes == 1 else 's'} ({pso.particles} particles per "
            f"iteration, {settings.strategy}; planned from what the first evaluation costs)"
        )
    # a task run confirms as many finalists as beat the baseline, up to its number
    most = "at most " if sizes.scores_task else ""
    return (
        f"Scores {most}{sizes.evaluations} evaluations: the unsteered baseline and "
        f"{sizes.settings} settings ({pso.particles} particles x {pso.iterations} iterations, "
        f"{settings.strategy})"
    )


def plan_lines(
    settings: RunSettings, plan: PlanSizes | RunPlan, others: int = 0
) -> list[str]:
    """What the run will do, said before it scores anything: the evaluations
    (the count the progress bar counts to), the documents of each part, the
    smallest gain each part can confirm (a warning when that is large) and
    the scoring condition (`others`: the active vectors the run does not
    tune). `plan` is an assembled run or its sizes counted beforehand."""
    sizes = plan if isinstance(plan, PlanSizes) else PlanSizes.of_plan(settings, plan)
    if not sizes.scores_task:
        prompts = "" if sizes.search is None else f" ({sizes.search})"
        searched = (
            f"{_scored(settings, sizes)}, for the strongest push toward the concept on the "
            f"vector's held-out prompts{prompts}, within the KL budget "
            f"{settings.options.kl_budget:g}."
        )
        return [searched, condition_line(others)]
    task = settings.fitness.task
    first = (
        f"{_scored(settings, sizes)} on {_n(sizes.search, 'search')} of {task}; the baseline "
        f"and the best {sizes.finalists} on {_n(sizes.confirm, 'confirmation')} that did not "
        "rank them"
    )
    if sizes.heldout != 0:
        held_task = "" if settings.heldout is None else f" of {settings.heldout.task}"
        first += (
            f"; the baseline and the pick on {_n(sizes.heldout, 'held-out')}{held_task} "
            "the search never sees."
        )
    else:
        first += "."
    lines = [first]
    if sizes.search is None:
        lines.append(
            "The documents are counted when the run starts (a task of lm-eval's registry)."
        )
    if sizes.confirm:
        level = settings.significance / max(1, sizes.finalists)  # Holm's first step
        needed = smallest_confirmable_gain(sizes.confirm, level, one_sided=True)
        check = (
            f"A setting is recommended only if it gains about {needed:.0f} points or more there"
        )
        if sizes.heldout:
            held = smallest_confirmable_gain(sizes.heldout, settings.significance)
            check += f"; the held-out documents can confirm about {held:.0f} points or more"
        lines.append(
            check + f" (paired tests at the {settings.significance:g} level, assuming about 3 "
            "in 10 answers change)."
        )
        if needed > LARGE_GAIN_POINTS:
            lines.append(
                f"⚠ With {sizes.confirm} confirmation documents only a large gain can be "
                "confirmed: use a task with more documents (or raise the document limit) for a "
                "smaller one."
            )
    lines.append(condition_line(others))
    return lines


def counted_sizes(
    settings: RunSettings, concept_prompts: tuple[int, int] | None = None
) -> PlanSizes:
    """`planned_sizes` with the task's (and held-out task's) documents counted
    without a model (optimize/scoring/documents.py, cached): what a form shows
    before the run. Raises InvalidInputError for a task too small to split."""
    from optimize.scoring.documents import limited, task_documents

    fitness = settings.fitness
    counts = task_documents(fitness.task, fitness.include_path)
    held = None
    if settings.heldout is not None:
        held = task_documents(settings.heldout.task, settings.heldout.include_path)
    return planned_sizes(
        settings,
        None if counts is None else limited(counts, fitness.limit),
        None if held is None or settings.heldout is None else limited(held, settings.heldout.limit),
        concept_prompts,
    )
