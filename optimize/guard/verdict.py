"""What a run found, in one verdict: whether it recommends a setting, how sure
it is, and the sentences every place that shows a result uses (the Optimize
tab, the command line, the result file), so they say the same thing in the
same words.

The rule: a setting is recommended only when
1. it beat the baseline on the search documents within the objective's
   limits (the KL budget, the guard task's drop) and steers at all;
2. its gain on the confirmation documents, which did not rank it, passes a
   one-sided paired sign test there, with Holm's step-down over the
   finalists at the run's significance (so the chance of recommending any
   setting that does not help stays within it: the winner's curse is paid
   for there, not hidden);
3. its greedy replies to a few neutral prompts do not loop (when checked);
4. the held-out check, when there is one, does not contradict it (a loss
   there with p < the significance withdraws it).
Otherwise the verdict says plainly which of these failed and shows the best
candidate with its numbers, and there is nothing to apply.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from optimize.config.space import Setting
from optimize.guard.objective import GUARD_DROP, KL, KL_SKIPPED, Objective, TargetObjective
from optimize.guard.split import PairedTest
from optimize.scoring.evaluation import Evaluation

RECOMMENDED = "recommended"
NO_RELIABLE_GAIN = "no_reliable_gain"
NO_GAIN = "no_gain"
OUTSIDE_LIMITS = "outside_limits"
LOOPS = "loops"
CONTRADICTED = "contradicted"
CANCELLED = "cancelled"
UNCONFIRMED = "unconfirmed"
KINDS = (
    RECOMMENDED, NO_RELIABLE_GAIN, NO_GAIN, OUTSIDE_LIMITS, LOOPS, CONTRADICTED, CANCELLED,
    UNCONFIRMED,
)

# What to try next when nothing is recommended, by verdict kind: one sentence,
# the same on the command line, in the result file and on the Optimize tab.
ADVICE = {
    NO_RELIABLE_GAIN: (
        "To confirm a smaller gain, give the run more documents (a task with more of them, "
        "or a higher document limit) or a longer time budget."
    ),
    NO_GAIN: (
        "Try other vectors (more and clearer concept and contrast prompts), another layer "
        "range, or both signs of the strength."
    ),
    OUTSIDE_LIMITS: (
        "Every setting that helped moved replies too far from the unsteered model: search "
        "lower strengths, or allow a larger KL budget if such replies are acceptable."
    ),
    LOOPS: "Search lower strengths: the setting that helped most repeats itself in replies.",
    CONTRADICTED: (
        "The gain did not hold on documents the search never saw: search with more documents "
        "before trusting a setting."
    ),
    CANCELLED: "Resume the run (or start it again) to get a verdict.",
    UNCONFIRMED: "Run the optimization again: this version confirms its pick.",
}

# What to try next when nothing is recommended but the held-out documents show
# the candidate gaining (p below the run's significance): the run's own
# documents were too few or too easy to show it.
HELDOUT_GAIN_ADVICE = (
    "The held-out documents show a gain that this run's own documents did not confirm. "
    "The held-out check measures the pick and does not choose it, so nothing is "
    "recommended: a run with more documents (a task with more of them, or a higher "
    "document limit) can confirm the gain or rule it out."
)


def describe_setting(setting: Setting) -> str:
    """"layer 8, alpha 1.05" (one vector) or "#1 layer 8 alpha 1.05; #2 ..."."""
    pairs = list(zip(setting.layers, setting.alphas, strict=True))
    if len(pairs) == 1:
        return f"layer {pairs[0][0]}, alpha {pairs[0][1]:g}"
    return "; ".join(
        f"#{i + 1} layer {layer} alpha {alpha:g}" for i, (layer, alpha) in enumerate(pairs)
    )


def p_phrase(value: float) -> str:
    """"p = 0.04", or "p < 0.001": a p-value as every view writes it."""
    return "p < 0.001" if value < 0.001 else f"p = {value:.2g}"


def paired_sentence(test: PairedTest, where: str, one_sided: bool = False) -> str:
    """"+15.0 points on 30 held-out documents (95 % interval +4 to +26; 6 fixed,
    1 broken, p = 0.13)". `one_sided`: the p of the test of a gain."""
    low, high = test.interval()
    interval = (
        "" if math.isnan(low) else f"95 % interval {low:+.0f} to {high:+.0f}; "
    )
    p = p_phrase(test.p_gain) + " one-sided" if one_sided else p_phrase(test.p_value)
    return (
        f"{test.gain_points:+.1f} points on {test.documents} {where} documents "
        f"({interval}{test.fixed} fixed, {test.broken} broken, {p})"
    )


@dataclass(frozen=True)
class Confirmation:
    """The baseline and the finalists scored on the confirmation documents.

    `finalists` are the settings (as evaluations of those documents, best of
    the search first); `tests` compares each with the baseline document by
    document; `level` is the run's significance, shared among the finalists
    by Holm's step-down (`passed`)."""

    samples: int
    documents: str
    baseline: Evaluation
    finalists: tuple[Evaluation, ...]
    tests: tuple[PairedTest, ...]
    level: float

    def thresholds(self) -> list[float | None]:
        """Per finalist, the level Holm's step-down compared its one-sided p
        with (the smallest p against level / K, the next against level / (K - 1),
        ...); None for a finalist never compared, because one with a smaller p
        failed first."""
        order = sorted(range(len(self.tests)), key=lambda i: (self.tests[i].p_gain, i))
        thresholds: list[float | None] = [None] * len(self.tests)
        for rank, index in enumerate(order):
            threshold = self.level / (len(order) - rank)
            thresholds[index] = threshold
            if not self.tests[index].confirms(threshold):
                break
        return thresholds

    def passed(self) -> list[int]:
        """Positions of the finalists whose gain passed Holm's step-down."""
        return [
            i for i, (test, threshold) in enumerate(zip(self.tests, self.thresholds(), strict=True))
            if threshold is not None and test.confirms(threshold)
        ]

    def outcome_text(self, index: int) -> str:
        """"one-sided p = 0.04, needed below 0.017: not confirmed": the test of
        finalist `index` as the rule used it, in the words every view shows."""
        test, threshold = self.tests[index], self.thresholds()[index]
        p = f"one-sided {p_phrase(test.p_gain)}"
        if threshold is None:
            return f"{p}: not confirmed, a finalist with a smaller p failed first"
        verdict = "confirmed" if test.confirms(threshold) else "not confirmed"
        return f"{p}, needed below {threshold:.2g}: {verdict}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "documents": self.documents,
            "baseline": self.baseline.to_dict(),
            "finalists": [e.to_dict() for e in self.finalists],
            "tests": [t.to_dict() for t in self.tests],
            "level": self.level,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Confirmation | None:
        if not data:
            return None
        return cls(
            samples=int(data["samples"]),
            documents=str(data.get("documents", "")),
            baseline=Evaluation.from_dict(data["baseline"]),
            finalists=tuple(Evaluation.from_dict(e) for e in data["finalists"]),
            tests=tuple(PairedTest.from_dict(t) for t in data["tests"]),
            level=float(data["level"]),
        )


@dataclass(frozen=True)
class Verdict:
    """The run's answer. `recommended` is the setting to apply (None: nothing);
    `candidate` the setting the verdict is about (the recommendation, or the
    best candidate when none); `confirmed` and `heldout` its paired tests on
    the confirmation and held-out documents; `headline` one sentence and
    `details` the sentences after it, shown as they are."""

    kind: str
    headline: str
    candidate: Evaluation | None = None
    recommended: Evaluation | None = None
    confirmed: PairedTest | None = None
    heldout: PairedTest | None = None
    details: tuple[str, ...] = field(default_factory=tuple)
    advice: str = ""

    def __post_init__(self) -> None:
        if not self.advice:  # what to try next, in the same words wherever it is shown
            object.__setattr__(self, "advice", ADVICE.get(self.kind, ""))

    @property
    def text(self) -> str:
        return " ".join((self.headline, *self.details, *((self.advice,) if self.advice else ())))

    @property
    def lines(self) -> tuple[str, ...]:
        """The verdict as every view shows it: the headline, the details, then
        what to try next (the command line prints these lines; the Optimize
        tab's card shows the same sentences)."""
        return (self.headline, *self.details, *((self.advice,) if self.advice else ()))

    def to_dict(self) -> dict[str, Any]:
        def where(e: Evaluation | None) -> dict[str, Any] | None:
            if e is None:
                return None
            return {"layers": list(e.layers), "alphas": list(e.alphas)}

        return {
            "kind": self.kind,
            "headline": self.headline,
            "details": list(self.details),
            "recommended": where(self.recommended),
            "candidate": where(self.candidate),
            "confirmed": None if self.confirmed is None else self.confirmed.to_dict(),
            "heldout": None if self.heldout is None else self.heldout.to_dict(),
            "advice": self.advice,
        }


def beats_baseline(objective: Objective, evaluation: Evaluation, baseline: Evaluation) -> bool:
    """Whether `evaluation` keeps the objective's limits, steers at all and
    beats the baseline's target: a candidate worth confirming."""
    metrics = evaluation.metrics
    if evaluation.is_baseline or not any(alpha != 0 for alpha in evaluation.alphas):
        return False
    if math.isnan(objective.value(metrics)) or not objective.within_limits(metrics):
        return False
    if metrics.get(KL_SKIPPED) == 1.0:
        return False
    return TargetObjective(objective.higher_is_better).better(metrics, baseline.metrics)


# Below this share of the KL budget, replies stay *very* close to the unsteered model's.
VERY_CLOSE_SHARE = 0.25


def kl_words(kl: float, budget: float) -> str:
    """What a KL (nats per token, on everyday text) means for replies, against
    the budget that kept SmolLM2 fluent (docs/guard.md)."""
    if kl <= VERY_CLOSE_SHARE * budget:
        return "Its replies stay very close to the unsteered model's"
    if kl <= budget:
        return "Its replies stay close to the unsteered model's"
    return "Its replies drift from the unsteered model's"


def _limits_text(objective: Objective, evaluation: Evaluation) -> str:
    kl = evaluation.metrics.get(KL, math.nan)
    if math.isnan(kl):
        return ""
    budget = objective.options.kl_budget
    text = (
        f"{kl_words(kl, budget)} on everyday text (KL {kl:.2f} nats per token, how far "
        "its next-word guesses move"
    )
    if objective.name != TargetObjective.name:
        text += f"; the budget is {budget:g}"
    else:
        text += f"; {budget:g} kept SmolLM2 fluent"
    drop = evaluation.metrics.get(GUARD_DROP, math.nan)
    if not math.isnan(drop):
        text += f"; the guard task changed by {-drop:+.1f} points"
    return text + ")."


def decide(
    objective: Objective,
    baseline: Evaluation,
    best: Evaluation | None,
    *,
    confirmation: Confirmation | None = None,
    heldout: PairedTest | None = None,
    heldout_documents: str = "held-out",
    loops: Sequence[tuple[Evaluation, str]] = (),
    cancelled: bool = False,
    scores_task: bool = True,
    significance: float = 0.05,
    confirm_planned: bool = True,
) -> Verdict:
    """The verdict of a run (see the module docstring for the rule).

    `best` is the objective's best search evaluation; `confirmation` what the
    finalists scored on the confirmation documents (None for a run without
    them); `heldout` the chosen setting's paired test on the held-out
    documents; `loops` the settings whose replies looped, with the reason.
    Concept-strength runs (`scores_task` False) rank the vector's own
    held-out prompts: their best within the limits is recommended as it is.
    """
    if best is None or best.is_baseline:
        return Verdict(
            CANCELLED if cancelled else NO_GAIN, "No setting was scored: nothing to apply."
        )
    if not scores_task:
        return _concept(objective, baseline, best, loops, cancelled)
    if not beats_baseline(objective, best, baseline):
        return _not_beaten(objective, baseline, best, heldout, heldout_documents, significance)
    if confirmation is None and not confirm_planned:
        return Verdict(
            UNCONFIRMED,
            "Not confirmed: this run scored no documents apart from those that ranked its "
            "settings (a run without confirmation documents, or a result of an earlier "
            "version), so nothing is recommended. Run the optimization again.",
            candidate=best,
            details=(
                (
                    f"Top candidate: {describe_setting(best.setting)}, {best.score:.3f} against "
                    f"the baseline's {baseline.score:.3f} on the search documents."
                ),
            ),
        )
    if confirmation is None:
        return Verdict(
            CANCELLED,
            "The run was cancelled before its best candidate was checked on documents that "
            "did not rank it: nothing to apply.",
            candidate=best,
            details=(
                (
                    f"Top candidate: {describe_setting(best.setting)}, {best.score:.3f} against "
                    f"the baseline's {baseline.score:.3f} on the search documents (not confirmed)."
                ),
            ),
        )
    passed = confirmation.passed()
    looping = {e.setting.key: reason for e, reason in loops}
    fluent = [i for i in passed if confirmation.finalists[i].setting.key not in looping]
    ranked = sorted(
        fluent, key=lambda i: -_sign(objective) * confirmation.finalists[i].score
    )  # best on the confirmation documents first
    chosen = ranked[0] if ranked else None
    if chosen is None:
        top = passed[0] if passed else 0
        candidate, test = confirmation.finalists[top], confirmation.tests[top]
        if passed:
            return Verdict(
                LOOPS,
                f"The confirmed setting ({describe_setting(candidate.setting)}) makes replies "
                f"loop: {looping[candidate.setting.key]} Nothing to apply.",
                candidate=candidate,
                confirmed=test,
                details=(
                    ("On the confirmation documents: "
                     f"{paired_sentence(test, 'confirmation', True)}."),
                ),
            )
        return Verdict(
            NO_RELIABLE_GAIN,
            f"No reliable gain: the top candidate ({describe_setting(candidate.setting)}) "
            f"gained {paired_sentence(test, 'confirmation', True)}, which does not rule out luck "
            f"at the {confirmation.level:.2g} level. Nothing to apply.",
            candidate=candidate,
            confirmed=test,
            heldout=heldout,
            details=_heldout_details(heldout, heldout_documents),
            advice=_heldout_gain_advice(heldout, significance),
        )
    candidate, test = confirmation.finalists[chosen], confirmation.tests[chosen]
    if heldout is not None and heldout.broken > heldout.fixed and heldout.p_value < significance:
        return Verdict(
            CONTRADICTED,
            f"Not recommended: {describe_setting(candidate.setting)} gained "
            f"{paired_sentence(test, 'confirmation', True)}, but lost "
            f"{paired_sentence(heldout, heldout_documents)}. Nothing to apply.",
            candidate=candidate,
            confirmed=test,
            heldout=heldout,
        )
    details = [*_heldout_details(heldout, heldout_documents)]
    limits = _limits_text(objective, candidate)
    if limits:
        details.append(limits)
    return Verdict(
        RECOMMENDED,
        f"Recommended: {describe_setting(candidate.setting)}. It gained "
        f"{paired_sentence(test, 'confirmation', True)} that did not rank it.",
        candidate=candidate,
        recommended=candidate,
        confirmed=test,
        heldout=heldout,
        details=tuple(details),
    )


def _sign(objective: Objective) -> float:
    return 1.0 if objective.higher_is_better else -1.0


def _heldout_details(heldout: PairedTest | None, where: str) -> tuple[str, ...]:
    if heldout is None:
        return ()
    return (f"Checked on documents the search never saw: {paired_sentence(heldout, where)}.",)


def _heldout_gain_advice(heldout: PairedTest | None, significance: float) -> str:
    """HELDOUT_GAIN_ADVICE when the held-out documents show the unrecommended
    candidate gaining at the run's significance (the two-sided test, as a
    held-out loss withdraws a recommendation); otherwise "" (the kind's advice)."""
    if heldout is not None and heldout.fixed > heldout.broken and heldout.p_value < significance:
        return HELDOUT_GAIN_ADVICE
    return ""


def _not_beaten(
    objective: Objective,
    baseline: Evaluation,
    best: Evaluation,
    heldout: PairedTest | None,
    heldout_documents: str,
    significance: float,
) -> Verdict:
    metrics = best.metrics
    kind, headline = NO_GAIN, (
        f"No setting beat the unsteered model: the highest-scoring one "
        f"({describe_setting(best.setting)}) scored {best.score:.3f} against the baseline's "
        f"{baseline.score:.3f} on the search documents. Nothing to apply."
    )
    if not math.isnan(objective.value(metrics)) and not objective.within_limits(metrics):
        kind = OUTSIDE_LIMITS
        headline = (
            "No setting that beat the unsteered model kept replies close to it "
            f"(KL budget {objective.options.kl_budget:g} nats per token"
            + (
                f", guard task drop at most {objective.options.max_guard_drop:g} points"
                if not math.isnan(metrics.get(GUARD_DROP, math.nan))
                else ""
            )
            + "). Nothing to apply."
        )
    return Verdict(
        kind, headline, candidate=best, heldout=heldout,
        details=_heldout_details(heldout, heldout_documents),
        advice=_heldout_gain_advice(heldout, significance) if kind == NO_GAIN else "",
    )


def _concept(
    objective: Objective,
    baseline: Evaluation,
    best: Evaluation,
    loops: Sequence[tuple[Evaluation, str]],
    cancelled: bool,
) -> Verdict:
    metrics = best.metrics
    if math.isnan(objective.value(metrics)) or not objective.within_limits(metrics):
        return Verdict(
            OUTSIDE_LIMITS,
            f"No setting kept replies close to the unsteered model (KL budget "
            f"{objective.options.kl_budget:g} nats per token). Nothing to apply.",
            candidate=best,
        )
    gain = best.score - baseline.score
    if not any(alpha != 0 for alpha in best.alphas) or not gain > 0:
        return Verdict(
            NO_GAIN,
            "No setting made the concept's held-out prompts more likely than their contrast "
            "prompts. Nothing to apply.",
            candidate=best,
        )
    for evaluation, reason in loops:
        if evaluation.setting.key == best.setting.key:
            return Verdict(
                LOOPS,
                f"The strongest setting ({describe_setting(best.setting)}) makes replies loop: "
                f"{reason} Nothing to apply.",
                candidate=best,
            )
    details = (_limits_text(objective, best),) if _limits_text(objective, best) else ()
    return Verdict(
        RECOMMENDED if not cancelled else CANCELLED,
        f"{'Recommended' if not cancelled else 'Best so far (cancelled)'}: "
        f"{describe_setting(best.setting)}, the strongest push toward the concept within the "
        f"limits: {gain:+.4f} nats per token on the vector's held-out prompts.",
        candidate=best,
        recommended=None if cancelled else best,
        details=details,
    )
