"""Model-free parts of the held-out split and the KL guard: the document split,
the paired sign test, the guarded objective's ranking, the Pareto front and the
recommendation."""

from __future__ import annotations

import math

import pytest
from scipy.stats import binomtest

from optimize.config.space import Setting
from optimize.guard.front import pareto_front
from optimize.guard.objective import (
    DEFAULT_OBJECTIVE,
    GUARD,
    GUARD_DROP,
    KL,
    OBJECTIVES,
    ObjectiveOptions,
    make_objective,
)
from optimize.guard.split import HELDOUT, SEARCH, DocumentSplit, paired_test, sign_test_p
from optimize.guard.verdict import beats_baseline, decide
from optimize.scoring.evaluation import Evaluation
from optimize.scoring.metrics import Metrics
from steering.errors import InvalidInputError


def _ev(index, target, kl=math.nan, guard=math.nan, drop=math.nan, cached=False, layer=None):
    values = {"target": target, "target_stderr": 0.05, KL: kl}
    if not math.isnan(guard):
        values[GUARD] = guard
    if not math.isnan(drop):
        values[GUARD_DROP] = drop
    setting = Setting((index if layer is None else layer,), (float(index),))
    return Evaluation.scored(0, index, setting, Metrics(values), 1.0, cached)


BASELINE = Evaluation.scored(-1, -1, Setting((), ()), Metrics({"target": 0.5, KL: 0.0}), 1.0)


# ------------------------------------------------------------------- split


@pytest.mark.parametrize("count, fraction", [(2, 0.5), (7, 0.5), (100, 0.5), (50, 0.2), (9, 0.9)])
def test_split_is_disjoint_covers_every_document_and_is_seeded(count, fraction):
    split = DocumentSplit(fraction, seed=3)
    parts = split.parts(count)
    held, searched = set(parts[HELDOUT]), set(parts[SEARCH])
    assert not held & searched and held | searched == set(range(count))
    assert held and searched
    assert len(held) == min(count - 1, max(1, round(count * fraction)))
    assert DocumentSplit(fraction, seed=3).parts(count) == parts  # seeded: the same again
    assert list(parts[HELDOUT]) == sorted(parts[HELDOUT])


def test_split_depends_on_the_seed_and_is_not_the_first_half():
    parts = [DocumentSplit(0.5, seed).parts(100)[HELDOUT] for seed in range(4)]
    assert len(set(parts)) == 4
    assert all(p != tuple(range(50)) for p in parts)


@pytest.mark.parametrize("fraction", [1, -0.1, 1.5, "0.5", True])
def test_split_refuses_fractions_outside_0_1(fraction):
    with pytest.raises(InvalidInputError, match="held-out fraction"):
        DocumentSplit(fraction)


def test_a_split_with_no_part_to_set_aside_is_refused():
    with pytest.raises(InvalidInputError, match="needs a held-out or a confirmation share"):
        DocumentSplit(0)


def test_split_of_one_document_is_refused():
    with pytest.raises(InvalidInputError, match="cannot be split"):
        DocumentSplit(0.5).parts(1)


# ------------------------------------------------------------- paired test


@pytest.mark.parametrize("fixed, broken", [(0, 0), (1, 0), (33, 8), (10, 10), (3, 12), (0, 7)])
def test_sign_test_equals_scipy_exact_binomial(fixed, broken):
    expected = 1.0 if fixed + broken == 0 else binomtest(fixed, fixed + broken, 0.5).pvalue
    assert sign_test_p(fixed, broken) == pytest.approx(expected, rel=1e-12)


def test_paired_test_counts_fixed_and_broken_documents():
    baseline = [0, 0, 0, 1, 1, 1, 0, 1]
    setting = [1, 1, 0, 1, 0, 1, 1, 1]
    test = paired_test(baseline, setting)
    assert (test.documents, test.fixed, test.broken) == (8, 3, 1)
    assert test.gain_points == pytest.approx(25.0)
    assert test.p_value == pytest.approx(binomtest(3, 4, 0.5).pvalue)
    assert test.stderr_points > 0
    lower = paired_test(baseline, setting, higher_is_better=False)
    assert (lower.fixed, lower.broken) == (1, 3)


def test_a_setting_that_changed_no_answer_is_not_certain_of_no_gain():
    """29 documents, none changed: the plain standard error is 0 and the
    interval [0, 0]; with half a document in each cell (Agresti and Min) it
    is about +-6 points, what 29 unchanged answers can rule out."""
    test = paired_test([1] * 15 + [0] * 14, [1] * 15 + [0] * 14)
    low, high = test.interval()
    assert test.gain_points == 0 and (test.fixed, test.broken) == (0, 0)
    assert low == pytest.approx(-high) and 5.5 < high < 7.0


def test_with_answers_changed_the_adjusted_error_is_close_to_the_plain_one():
    baseline = [0] * 22 + [1] * 7 + [0] * 20 + [1] * 21
    setting = [1] * 22 + [0] * 7 + [0] * 20 + [1] * 21
    diffs = [s - b for b, s in zip(baseline, setting, strict=True)]
    mean = sum(diffs) / len(diffs)
    plain = 100 * math.sqrt(
        sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1) / len(diffs)
    )
    test = paired_test(baseline, setting)
    assert test.stderr_points == pytest.approx(plain, rel=0.03)
    assert test.stderr_points != pytest.approx(plain, rel=1e-6)


def test_values_other_than_0_and_1_keep_the_plain_standard_error():
    test = paired_test([0.2, 0.5, 0.4], [0.3, 0.9, 0.4])
    diffs = [0.1, 0.4, 0.0]
    mean = sum(diffs) / 3
    plain = 100 * math.sqrt(sum((d - mean) ** 2 for d in diffs) / 2 / 3)
    assert test.stderr_points == pytest.approx(plain)


# ---------------------------------------------------------------- objective


def test_default_objective_is_the_registered_guarded_one():
    assert DEFAULT_OBJECTIVE == "guarded" and DEFAULT_OBJECTIVE in OBJECTIVES
    with pytest.raises(InvalidInputError, match="KL budget"):
        ObjectiveOptions(kl_budget=0)
    with pytest.raises(InvalidInputError, match="Unknown objective"):
        make_objective("nope")


def test_over_budget_ranks_below_every_setting_within_it():
    guarded = make_objective("guarded", options=ObjectiveOptions(kl_budget=0.5))
    within_low = _ev(1, 0.55, kl=0.4)
    within_high = _ev(2, 0.60, kl=0.49)
    over_best = _ev(3, 0.95, kl=0.6)
    far_over = _ev(4, 0.99, kl=3.0)
    unmeasured = _ev(5, 1.0)  # KL NaN
    everything = [over_best, far_over, unmeasured, within_low, within_high]
    assert guarded.best(everything) is within_high
    assert guarded.better(within_low.metrics, over_best.metrics)
    assert guarded.better(over_best.metrics, far_over.metrics)  # smaller overshoot first
    assert not guarded.better(unmeasured.metrics, far_over.metrics)
    assert guarded.cost(within_high.metrics) < guarded.cost(over_best.metrics)
    assert math.isinf(guarded.cost(unmeasured.metrics))
    # target only ignores the guard
    assert make_objective("target").best(everything) is unmeasured
    assert make_objective("target").best(everything[:2]) is far_over


def test_guard_task_drop_is_a_second_limit():
    guarded = make_objective("guarded", options=ObjectiveOptions(0.5, max_guard_drop=5.0))
    small_drop = _ev(1, 0.6, kl=0.1, guard=0.40, drop=4.0)
    big_drop = _ev(2, 0.9, kl=0.1, guard=0.30, drop=14.0)
    assert guarded.within_limits(small_drop.metrics)
    assert not guarded.within_limits(big_drop.metrics)
    assert guarded.best([big_drop, small_drop]) is small_drop


def test_lower_is_better_targets_keep_their_direction():
    guarded = make_objective("guarded", higher_is_better=False)
    assert (
        guarded.best([_ev(1, 0.3, kl=0.1), _ev(2, 0.2, kl=0.1), _ev(3, 0.1, kl=0.9)]).particle == 2
    )


# -------------------------------------------------------------------- front


def test_front_keeps_the_non_dominated_settings_by_kl():
    a = _ev(1, 0.60, kl=0.10)
    b = _ev(2, 0.70, kl=0.30)
    c = _ev(3, 0.65, kl=0.40)  # dominated by b
    d = _ev(4, 0.80, kl=0.90)
    repeat = _ev(5, 0.60, kl=0.10, layer=9)  # same metrics as a: a is kept
    cached = _ev(6, 0.99, kl=0.0, cached=True)
    front = pareto_front([BASELINE, d, c, b, a, repeat, cached, _ev(7, 0.9)])
    assert front == [a, b, d]
    assert pareto_front([_ev(1, 0.6)]) == []  # no KL measured: no front


def test_front_with_a_guard_task_has_a_third_axis():
    a = _ev(1, 0.70, kl=0.3, guard=0.50)
    b = _ev(2, 0.70, kl=0.3, guard=0.60)  # dominates a
    c = _ev(3, 0.60, kl=0.3, guard=0.70)  # worse target, better guard: stays
    assert pareto_front([a, b, c]) == [b, c]


# ----------------------------------------------------------- candidates


def test_a_candidate_keeps_the_guard_steers_and_beats_the_baseline():
    guarded = make_objective("guarded", options=ObjectiveOptions(0.5))
    good, over = _ev(1, 0.62, kl=0.2), _ev(2, 0.9, kl=2.0)
    assert guarded.best([good, over]) is good and beats_baseline(guarded, good, BASELINE)
    assert not beats_baseline(guarded, over, BASELINE)  # over the KL budget
    assert not beats_baseline(guarded, _ev(1, 0.45, kl=0.2), BASELINE)  # worse
    assert not beats_baseline(guarded, _ev(1, 0.5, kl=0.1), BASELINE)  # a tie is no gain
    zero = Evaluation.scored(0, 1, Setting((2,), (0.0,)), Metrics({"target": 0.9, KL: 0.0}), 1.0)
    assert not beats_baseline(guarded, zero, BASELINE)  # alpha 0: the baseline itself


def test_no_candidate_within_the_guard_is_said_plainly():
    guarded = make_objective("guarded", options=ObjectiveOptions(0.5))
    worse, over = _ev(1, 0.45, kl=0.2), _ev(2, 0.9, kl=2.0)
    verdict = decide(guarded, BASELINE, guarded.best([worse, over]))
    assert verdict.recommended is None and "Nothing to apply" in verdict.headline
    assert decide(guarded, BASELINE, None).recommended is None
    verdict = decide(guarded, BASELINE, over)
    assert verdict.recommended is None and "KL budget 0.5" in verdict.headline


def test_a_tie_within_the_budget_goes_to_the_smaller_kl_which_is_on_the_front():
    """Two settings with the same score: the gentler one is the best (and the
    recommendation is then a point of the front the tab can mark)."""
    objective = make_objective("guarded")
    sharp, gentle = _ev(0, 0.875, kl=0.4, layer=1), _ev(1, 0.875, kl=0.2, layer=2)
    assert objective.best([sharp, gentle]) is gentle
    assert objective.best([gentle, sharp]) is gentle
    over = _ev(2, 0.875, kl=0.9, layer=3)  # over the budget: never preferred on a tie
    assert objective.best([gentle, over]) is gentle
    assert gentle in pareto_front([sharp, gentle, over], objective.higher_is_better)
