"""The default run's answer: documents split into search, confirmation and
held-out parts; the finalists confirmed on documents that did not rank them;
the verdict's rule; one scoring condition for the baseline and every
setting; no KL pass and an early stop for settings the baseline dominates.
Checked on the tiny Llama against the fitness scored by hand on the same
documents (the oracle), through the journal and the result file."""

from __future__ import annotations

import json
import math
import os
import threading
from pathlib import Path

import pytest

from optimize import LmEvalFitness, OptimizationResult, PsoConfig, SearchSpace, run_optimization
from optimize.config.space import Setting
from optimize.guard.kl import GuardedFitness, KlGuard
from optimize.guard.objective import KL, KL_SKIPPED, ObjectiveOptions, make_objective
from optimize.guard.split import (
    CONFIRM,
    HELDOUT,
    SEARCH,
    DocumentSplit,
    PairedTest,
    paired_test,
    sign_test_p,
    smallest_confirmable_gain,
)
from optimize.guard.verdict import (
    CONTRADICTED,
    LOOPS,
    NO_GAIN,
    NO_RELIABLE_GAIN,
    OUTSIDE_LIMITS,
    RECOMMENDED,
    UNCONFIRMED,
    Confirmation,
    decide,
)
from optimize.run.assembly import assembled
from optimize.run.confirm import pick_finalists
from optimize.run.journal import CONFIRM as CONFIRM_ENTRY, JournalFile, read_journal
from optimize.run.optimization import RunPlan
from optimize.run.plan import plan_lines
from optimize.run.settings import RunSettings
from optimize.scoring.evaluation import Evaluation
from optimize.scoring.metrics import PARTIAL, Metrics
from optimize.scoring.racing import RacingFitness
from steering.errors import InvalidInputError
from tests.support.tasks import sentiment_fitness, write_forty_sentiment_task

SPLIT = DocumentSplit(fraction=0.25, seed=3, confirm=0.5)  # of 40 documents: 10 held out, 15 + 15


def _evaluation(particle, score, kl=0.1, layer=1, alpha=1.0, iteration=0):
    metrics = Metrics({"target": score, "target_stderr": 0.0, "kl": kl})
    return Evaluation.scored(iteration, particle, Setting((layer,), (alpha,)), metrics, 0.1)


BASELINE = Evaluation.scored(-1, -1, Setting((), ()), Metrics({"target": 0.5, "kl": 0.0}), 0.1)

# ------------------------------------------------------------------ the split


def test_the_split_makes_three_disjoint_seeded_parts_that_cover_every_document():
    parts = DocumentSplit(0.3, 7, 0.5).parts(100)
    assert [len(parts[s]) for s in (HELDOUT, CONFIRM, SEARCH)] == [30, 35, 35]
    everything = sorted(parts[HELDOUT] + parts[CONFIRM] + parts[SEARCH])
    assert everything == list(range(100))
    assert DocumentSplit(0.3, 7, 0.5).parts(100) == parts
    assert DocumentSplit(0.3, 8, 0.5).parts(100) != parts
    # no held-out share (a held-out task replaces it): search and confirmation only
    two = DocumentSplit(0.0, 7, 0.5).parts(10)
    assert (len(two[HELDOUT]), len(two[CONFIRM]), len(two[SEARCH])) == (0, 5, 5)
    # results written before confirmation existed: two parts, as then
    old = DocumentSplit.from_dict({"fraction": 0.5, "seed": 1})
    assert old.confirm == 0.0 and len(old.parts(10)[CONFIRM]) == 0
    with pytest.raises(InvalidInputError, match="cannot be split into search and confirmation"):
        DocumentSplit(0.0, 0, 0.5).parts(1)


def test_the_smallest_confirmable_gain_follows_the_exact_sign_test():
    # 100 documents, 30 change: 21 fixed and 9 broken is the first split with p < 0.05
    assert sign_test_p(21, 9) < 0.05 <= sign_test_p(20, 10)
    assert smallest_confirmable_gain(100) == pytest.approx(12.0)
    # 10 documents, 3 change: no split of 3 passes; 6 fixed of 10 with none broken does
    assert smallest_confirmable_gain(10) == pytest.approx(60.0)
    assert smallest_confirmable_gain(3) == 100.0
    assert smallest_confirmable_gain(400) < smallest_confirmable_gain(100)


def test_a_paired_interval_is_centred_on_the_gain():
    test = paired_test([0, 0, 1, 1, 0, 1], [1, 1, 1, 0, 1, 1])
    low, high = test.interval()
    assert low < test.gain_points < high
    assert test.gain_points == pytest.approx(100 * 2 / 6)
    assert high - test.gain_points == pytest.approx(1.959964 * test.stderr_points, rel=1e-5)


# ---------------------------------------------------------------- the verdict


def _confirmation(*tests: PairedTest, level: float = 0.05) -> Confirmation:
    finalists = tuple(
        _evaluation(i, 0.5 + t.gain_points / 100, iteration=3, alpha=float(i + 1))
        for i, t in enumerate(tests)
    )
    documents = tests[0].documents if tests else 0
    return Confirmation(documents, "docs", BASELINE, finalists, tests, level)


def _test(fixed: int, broken: int, documents: int = 60) -> PairedTest:
    diffs = [1.0] * fixed + [-1.0] * broken + [0.0] * (documents - fixed - broken)
    return paired_test([0.0] * documents, diffs)


def test_only_a_gain_that_passes_the_test_on_the_confirmation_documents_is_recommended():
    guarded = make_objective("guarded")
    best = _evaluation(0, 0.8, alpha=1.0)
    strong, weak = _test(12, 1), _test(6, 3)
    assert strong.p_gain < 0.05 / 2 and weak.p_gain > 0.05  # one-sided: Holm's first step
    verdict = decide(guarded, BASELINE, best, confirmation=_confirmation(weak, strong))
    assert verdict.kind == RECOMMENDED and verdict.recommended.alphas == (2.0,)
    assert verdict.confirmed == strong and "Recommended: layer 1, alpha 2" in verdict.headline
    none = decide(guarded, BASELINE, best, confirmation=_confirmation(weak, level=0.05))
    assert none.kind == NO_RELIABLE_GAIN and none.recommended is None
    assert none.headline.startswith("No reliable gain: the top candidate (layer 1, alpha 1)")
    assert "Nothing to apply." in none.headline and "6 fixed, 3 broken" in none.headline


def test_the_verdict_says_why_there_is_nothing_to_apply():
    guarded = make_objective("guarded", options=ObjectiveOptions(kl_budget=0.5))
    below = decide(guarded, BASELINE, _evaluation(0, 0.4))
    assert below.kind == NO_GAIN and "0.400 against the baseline's 0.500" in below.headline
    over = decide(guarded, BASELINE, _evaluation(0, 0.9, kl=0.9))
    assert over.kind == OUTSIDE_LIMITS and "KL budget 0.5" in over.headline
    best = _evaluation(0, 0.8)
    unconfirmed = decide(guarded, BASELINE, best, confirm_planned=False)
    assert unconfirmed.kind == UNCONFIRMED and unconfirmed.recommended is None
    strong = _test(12, 1)
    confirmation = _confirmation(strong)
    looping = decide(guarded, BASELINE, best, confirmation=confirmation,
                     loops=[(confirmation.finalists[0], "replies repeat themselves.")])
    assert looping.kind == LOOPS and "replies repeat themselves." in looping.headline
    contradicted = decide(guarded, BASELINE, best, confirmation=confirmation,
                          heldout=_test(2, 14, 40))
    assert contradicted.kind == CONTRADICTED and contradicted.recommended is None


def test_a_held_out_gain_left_unrecommended_is_said_with_what_would_confirm_it():
    from optimize.guard.verdict import ADVICE, HELDOUT_GAIN_ADVICE

    guarded = make_objective("guarded", options=ObjectiveOptions(kl_budget=0.5))
    gain, flat = _test(14, 2, 40), _test(5, 4, 40)
    assert gain.p_value < 0.05 and flat.p_value > 0.05
    below = decide(guarded, BASELINE, _evaluation(0, 0.4), heldout=gain)
    assert below.kind == NO_GAIN and below.recommended is None
    assert below.advice == HELDOUT_GAIN_ADVICE
    (held,) = below.details  # two-sided exact sign test: 2 x 137 / 2^16
    assert held.startswith("Checked on documents the search never saw: +30.0 points on 40 ")
    assert held.endswith("14 fixed, 2 broken, p = 0.0042).")
    unconfirmed = decide(guarded, BASELINE, _evaluation(0, 0.8),
                         confirmation=_confirmation(_test(6, 3)), heldout=gain)
    assert unconfirmed.kind == NO_RELIABLE_GAIN and unconfirmed.advice == HELDOUT_GAIN_ADVICE
    # no gain held out, or one below the run's significance: the kind's own advice
    assert decide(guarded, BASELINE, _evaluation(0, 0.4), heldout=flat).advice == ADVICE[NO_GAIN]
    assert decide(guarded, BASELINE, _evaluation(0, 0.4), heldout=gain,
                  significance=0.001).advice == ADVICE[NO_GAIN]
    # outside the KL budget more documents would not help: its own advice stays
    over = decide(guarded, BASELINE, _evaluation(0, 0.9, kl=0.9), heldout=gain)
    assert over.kind == OUTSIDE_LIMITS and over.advice == ADVICE[OUTSIDE_LIMITS]


def test_each_finalist_line_gives_the_one_sided_p_and_the_level_holm_compared_it_with():
    confirmation = _confirmation(_test(7, 2), _test(12, 1), _test(9, 1))
    assert confirmation.thresholds() == pytest.approx([0.05, 0.05 / 3, 0.025])
    assert confirmation.passed() == [1, 2]
    assert confirmation.outcome_text(1) == "one-sided p = 0.0017, needed below 0.017: confirmed"
    assert confirmation.outcome_text(0) == (
        "one-sided p = 0.09, needed below 0.05: not confirmed"
    )
    stopped = _confirmation(_test(7, 2), _test(9, 1), level=0.01)
    assert stopped.thresholds() == [None, 0.005] and stopped.passed() == []
    assert stopped.outcome_text(0) == (
        "one-sided p = 0.09: not confirmed, a finalist with a smaller p failed first"
    )


def test_finalists_are_the_best_distinct_settings_that_beat_the_baseline():
    guarded = make_objective("guarded", options=ObjectiveOptions(kl_budget=0.5))
    found = [
        _evaluation(0, 0.6, alpha=1.0),
        _evaluation(1, 0.7, alpha=2.0),
        _evaluation(2, 0.7, alpha=2.0),  # the same setting again
        _evaluation(3, 0.9, kl=0.9, alpha=3.0),  # over the KL budget
        _evaluation(4, 0.7, kl=0.05, alpha=4.0),  # ties the best with a smaller KL: first
        _evaluation(5, 0.4, alpha=5.0),  # below the baseline
        _evaluation(6, 0.8, alpha=0.0),  # steers nothing
    ]
    assert [e.particle for e in pick_finalists(found, guarded, BASELINE, 3)] == [4, 1, 0]
    assert [e.particle for e in pick_finalists(found, guarded, BASELINE, 10)] == [4, 1, 0]


# ---------------------------------------------------------- the run, by hand


@pytest.fixture(scope="module")
def forty_documents(tmp_path_factory):
    """`tiny_sentiment` over 40 documents, for a search part worth racing."""
    return write_forty_sentiment_task(tmp_path_factory.mktemp("forty"))



@pytest.fixture
def split_plan(steerer, forty_documents):
    """A run of a 40-document task split three ways (the search finds settings
    that beat the baseline there, and the confirmation refutes them)."""
    config = sentiment_fitness(forty_documents, limit=None)
    base = steerer.vectors[1:]  # vector 2 is not tuned: on for the baseline and every setting
    search = LmEvalFitness(steerer, config, split=SPLIT, side=SEARCH)
    guarded = GuardedFitness(search, KlGuard(steerer, batch_size=4, base=base), None, base)
    return RunPlan(
        guarded, SPACE, PSO, objective="guarded",
        options=ObjectiveOptions(kl_budget=1e6),  # the tiny model's KL means nothing
        confirm=LmEvalFitness(steerer, config, split=SPLIT, side=CONFIRM),
        heldout=LmEvalFitness(steerer, config, split=SPLIT, side=HELDOUT),
        finalists=2, significance=0.5,
    )


SPACE = SearchSpace(layer_min=1, layer_max=3, alpha_min=-30.0, alpha_max=30.0, alpha_decimals=0)
PSO = PsoConfig(particles=3, iterations=3, seed=0)


def test_finalists_and_the_baseline_score_on_the_confirmation_documents_as_by_hand(
    steerer, split_plan
):
    originals = steerer.vectors
    seen = []
    result = run_optimization(steerer, [0], split_plan, on_progress=seen.append)
    assert steerer.vectors == originals
    confirmation = result.confirmation
    assert confirmation is not None and 1 <= len(confirmation.finalists) <= 2
    assert (confirmation.samples, result.samples, result.heldout.samples) == (15, 15, 10)
    # the oracle: the confirmation fitness scored by hand with the same vectors
    oracle = split_plan.confirm
    base_metrics, base_values = oracle.document_scores(list(originals[1:]))
    assert confirmation.baseline.score == pytest.approx(base_metrics.target, abs=1e-9)
    for finalist, test in zip(confirmation.finalists, confirmation.tests, strict=True):
        from optimize.scoring.placing import SettingScorer

        vectors = SettingScorer(steerer, originals, [0], oracle).vectors_of(finalist.setting)
        assert vectors[1] is originals[1]
        metrics, values = oracle.document_scores(vectors)
        assert finalist.score == pytest.approx(metrics.target, abs=1e-9)
        assert test == paired_test(base_values, values)
        assert finalist.metrics[KL] == result.search_evaluation(finalist.setting).metrics[KL]
    # every progress report counted against one total, which ends full
    assert seen[-1].done == seen[-1].total == result.final_progress().total
    assert [p.phase for p in seen].count("confirm") == 1 + len(confirmation.finalists)
    assert result.verdict.kind in (RECOMMENDED, NO_RELIABLE_GAIN)


def test_the_baseline_keeps_the_vectors_a_run_does_not_tune(steerer, sentiment_task):
    """One scoring condition: an active vector left out of the selection is on
    for the baseline and for every setting (checked against the fitness by
    hand); the KL guard measures from that baseline, so alpha 0 has KL 0."""
    config = sentiment_fitness(sentiment_task)
    fitness = LmEvalFitness(steerer, config)
    others = list(steerer.vectors[1:])
    guard = KlGuard(steerer, batch_size=4, base=others)
    assert guard.evaluate(others).kl == 0.0  # the baseline condition is the reference
    assert guard.evaluate([]).kl > 0.0  # no steering at all is not
    plan = RunPlan(GuardedFitness(fitness, guard, None, others), SPACE,
                   PsoConfig(particles=2, iterations=1, seed=1), objective="guarded")
    result = run_optimization(steerer, [0], plan)
    assert result.baseline.score == pytest.approx(fitness.metrics(others).target, abs=1e-9)
    assert result.baseline.metrics[KL] == 0.0
    assert result.verdict.kind == UNCONFIRMED or result.verdict.recommended is None


def test_settings_the_baseline_dominates_get_no_kl_pass_and_the_front_does_not_change(
    steerer, sentiment_task
):
    """A setting whose target is at or below the baseline's can be neither
    recommended nor on the front, so its KL pass is skipped; the front and
    the verdict equal those of the same run with every KL measured."""
    config = sentiment_fitness(sentiment_task)
    pso = PsoConfig(particles=4, iterations=3, seed=2)
    base = list(steerer.vectors[1:])

    def plan(skipping: bool) -> RunPlan:
        guarded = GuardedFitness(
            LmEvalFitness(steerer, config), KlGuard(steerer, batch_size=4, base=base), None, base
        )
        if not skipping:
            guarded.calibrate = lambda *a, **k: None  # never told the baseline: measures all
        return RunPlan(guarded, SPACE, pso, objective="guarded",
                       options=ObjectiveOptions(kl_budget=1e6))

    skipping, measuring = plan(True), plan(False)
    fast = run_optimization(steerer, [0], skipping)
    full = run_optimization(steerer, [0], measuring)
    assert skipping.fitness.skipped > 0 and measuring.fitness.skipped == 0
    sign = 1.0
    for evaluation in fast.evaluations:
        skipped = evaluation.metrics.get(KL_SKIPPED) == 1.0
        assert skipped == (sign * evaluation.score <= sign * fast.baseline.score)
        assert skipped == math.isnan(evaluation.metrics[KL])
    assert [e.setting for e in fast.front] == [e.setting for e in full.front]
    assert all(e.score > fast.baseline.score for e in full.front)
    assert fast.verdict.kind == full.verdict.kind


def test_a_run_cancelled_while_confirming_resumes_without_scoring_again(
    steerer, split_plan, tmp_path
):
    journal = JournalFile(tmp_path / "run.journal.jsonl")
    whole = run_optimization(steerer, [0], split_plan)
    cancel = threading.Event()

    def stop_in_confirmation(progress):
        if progress.phase == "confirm":
            cancel.set()

    part = run_optimization(steerer, [0], split_plan, cancel=cancel, journal=journal,
                            on_progress=stop_in_confirmation)
    assert part.cancelled and part.confirmation is None
    kept = read_journal(journal.path)
    assert len(kept.confirm) == 1 and kept.baseline is not None and kept.baseline[1]
    calls = []
    confirm = split_plan.confirm
    original = confirm.document_scores

    def counting(vectors):
        calls.append(len(vectors))
        return original(vectors)

    confirm.document_scores = counting
    resumed = run_optimization(steerer, [0], split_plan,
                               journal=JournalFile(journal.path, resume=True))
    assert not resumed.cancelled
    assert len(calls) == len(resumed.confirmation.finalists)  # the baseline came from the journal
    assert resumed.confirmation.tests == whole.confirmation.tests
    assert resumed.verdict.to_dict() == whole.verdict.to_dict()
    kinds = [json.loads(line).get("kind") for line in journal.path.read_text().splitlines()[1:]]
    assert kinds.count(CONFIRM_ENTRY) == 1 + len(whole.confirmation.finalists)


def test_the_result_file_keeps_the_confirmation_and_the_verdict(steerer, split_plan, tmp_path):
    result = run_optimization(steerer, [0], split_plan)
    back = OptimizationResult.load(result.save(tmp_path / "r.json"))
    assert back.confirmation == result.confirmation
    assert back.verdict.to_dict() == result.verdict.to_dict()
    written = json.loads((tmp_path / "r.json").read_text())
    assert written["verdict"]["headline"] == result.verdict.headline
    # a result of an earlier version confirmed nothing: nothing is recommended
    for key in ("confirmation", "confirm_planned", "verdict"):
        written.pop(key)
    written["version"] = 3
    old = OptimizationResult.from_dict(written)
    assert old.verdict.recommended is None


# ---------------------------------------------------------------- racing


def test_racing_scores_the_whole_search_part_unless_a_setting_is_clearly_worse(
    steerer, forty_documents
):
    config = sentiment_fitness(forty_documents, limit=None)
    split = DocumentSplit(0.0, 0, 0.5)  # 20 searched
    whole = LmEvalFitness(steerer, config, split=split, side=SEARCH)
    head = LmEvalFitness(steerer, config, split=split, side=SEARCH, part=(0.0, 0.5))
    tail = LmEvalFitness(steerer, config, split=split, side=SEARCH, part=(0.5, 1.0))
    racing = RacingFitness(head, tail)
    assert (head.samples, tail.samples, racing.samples) == (10, 10, 20)
    base = list(steerer.vectors[1:])
    base_metrics, base_values = racing.document_scores(base)
    assert base_values == whole.document_scores(base)[1]  # the two parts are the whole, in order
    assert base_metrics.target == pytest.approx(whole.metrics(base).target, abs=1e-12)
    racing.calibrate(base_values)
    # the baseline itself is not worse than itself: scored whole
    same, _ = racing.document_scores(base)
    assert PARTIAL not in same
    # a setting that breaks the task on the first part is stopped there
    worse = [0.0] * 10
    assert racing.clearly_worse(worse) == (sum(base_values[:10]) >= 3)
    assert not racing.clearly_worse(list(base_values[:10]))
    # once three settings that could be finalists are in, the worst of them is the bar
    assert racing.reference is racing._baseline
    perfect = [1.0] * 20
    for _ in range(3):
        racing.admit(1.0, perfect)
    assert list(racing.reference) == [1.0] * 10
    assert racing.clearly_worse(list(base_values[:10])) == (sum(base_values[:10]) <= 7)


# ---------------------------------------------------------------- settings


def test_contradictory_flags_are_refused_naming_both():
    with pytest.raises(
        InvalidInputError, match="--alpha-min/--alpha-max bound the alpha, but --unit is strength"
    ):
        RunSettings.from_values({"task": "t", "alpha_min": -3.0, "alpha_max": 3.0})
    with pytest.raises(
        InvalidInputError, match="--strength-max bound the strength, but --unit is alpha"
    ):
        RunSettings.from_values({"task": "t", "unit": "alpha", "strength_max": 0.2})
    with pytest.raises(InvalidInputError, match="--heldout-limit needs --heldout-task"):
        RunSettings.from_values({"task": "t", "heldout_limit": 10})
    ok = RunSettings.from_values(
        {"task": "t", "unit": "alpha", "alpha_min": -3.0, "alpha_max": 3.0}
    )
    assert ok.space(30).alpha_min == -3.0
    # a journal's given settings rebuild the same settings
    assert RunSettings.from_values(ok.to_values()) == ok


def test_the_plan_says_the_documents_and_the_smallest_gain_before_scoring(steerer, sentiment_task):
    settings = RunSettings.from_values(
        {"task": "tiny_sentiment", "task_folder": sentiment_task, "layer_min": 1, "layer_max": 3,
         "particles": 2, "iterations": 1}
    )
    with assembled(settings, steerer, [0]) as plan:
        lines = plan_lines(settings, plan)
        assert plan.total == 1 + 2 + (1 + 3) + 2
    text = " ".join(lines)
    # 8 documents: 2 held out (30 %), 5 confirm (80 % of the other 6), 1 searched
    assert "on 1 search document of tiny_sentiment" in text
    assert "5 confirmation documents" in text and "2 held-out documents" in text
    assert "⚠ With 5 confirmation documents only a large gain can be confirmed" in text


@pytest.mark.parametrize(
    "given",
    [
        {},
        {"heldout_task": "tiny_heldout", "heldout_limit": 3},
        {"task": "tiny_group", "limit": 5, "holdout_fraction": 0.4},
        {"budget": 5.0},
    ],
    ids=["split", "heldout-task", "group", "budget"],
)
def test_the_plan_counted_before_the_model_runs_is_the_assembled_runs(
    steerer, sentiment_task, given
):
    """The Optimize tab says the plan while its form is filled in, counting the
    documents without the model: the same sizes, evaluations and lines as the
    run it then assembles (what the command line prints)."""
    from optimize.run.plan import PlanSizes, counted_sizes

    settings = RunSettings.from_values(
        {"task": "tiny_sentiment", "task_folder": sentiment_task, "layer_min": 1,
         "layer_max": 3, "particles": 2, "iterations": 1, **given}
    )
    counted = counted_sizes(settings)
    with assembled(settings, steerer, [0]) as plan:
        assert counted == PlanSizes.of_plan(settings, plan)
        assert plan_lines(settings, counted, 1) == plan_lines(settings, plan, 1)
        if not given.get("budget"):
            assert counted.evaluations == plan.total  # what the progress bar counts to


def test_documents_are_counted_once_and_again_when_the_folder_changes(tmp_path):
    from optimize.scoring import documents
    from tests.support.tasks import write_sentiment_task

    folder = write_sentiment_task(tmp_path)
    documents._counted.cache_clear()
    first = documents.task_documents("tiny_sentiment", folder)
    assert first is not None and documents.task_documents("tiny_sentiment", folder) == first
    assert documents._counted.cache_info().hits == 1
    assert documents.task_documents("no_such_task", folder) is None  # a plan line never fails
    assert documents.task_documents("tiny_sentiment", None) is None  # registered: not counted
    assert "tiny_sentiment" in documents.folder_tasks(folder)
    assert "tiny_tag" not in documents.folder_tasks(folder)  # a tag has no score of its own
    data = Path(folder) / "test.jsonl"  # the scored split
    lines = data.read_text().splitlines()
    data.write_text("\n".join(lines[:-1]) + "\n")
    os.utime(data, (data.stat().st_atime, data.stat().st_mtime + 10))
    assert documents.task_documents("tiny_sentiment", folder) == (first[0] - 1,)


def test_holm_passes_the_smallest_p_at_level_over_k_then_steps_down():
    # one-sided p: (12, 1) 0.0017; (9, 1) 0.011; (7, 2) 0.090
    tests = (_test(9, 1), _test(12, 1), _test(7, 2))
    assert _confirmation(*tests, level=0.05).passed() == [0, 1]  # 0.0017 < 0.017, 0.011 < 0.025
    assert _confirmation(*tests, level=0.02).passed() == [1]  # 0.011 > 0.01: stops there
    assert _confirmation(_test(7, 2), level=0.05).passed() == []


# ---------------------------------------------------------------- time budget


def test_a_budget_plans_the_iterations_that_fit_and_says_so():
    from optimize.run.optimization import plan_budget

    plan = RunPlan(None, SPACE, PsoConfig(particles=6, iterations=5), budget_seconds=600)
    fitted = plan_budget(plan, elapsed=30.0, setting_seconds=10.0, tail_seconds=90.0)
    assert (fitted.pso.particles, fitted.pso.iterations) == (6, 8)  # 48 settings: 480 of 480 s
    assert "6 particles x 8 iterations fit" in fitted.line and "10.0 s" in fitted.line
    few = plan_budget(plan, elapsed=30.0, setting_seconds=100.0, tail_seconds=90.0)
    assert (few.pso.particles, few.pso.iterations) == (4, 1)  # not one round: fewer particles
    with pytest.raises(InvalidInputError, match="Allow about 20 minutes for one round of 6"):
        plan_budget(plan, elapsed=30.0, setting_seconds=100.0, tail_seconds=580.0)


def test_a_budgeted_run_keeps_its_plan_in_the_journal_and_resumes_with_it(
    steerer, split_plan, tmp_path
):
    import dataclasses

    budgeted = dataclasses.replace(split_plan, budget_seconds=3600.0)
    journal = JournalFile(tmp_path / "run.journal.jsonl")
    notes = []
    cancel = threading.Event()

    def stop_soon(progress):
        notes.append(progress.note)
        if progress.done == 3:
            cancel.set()

    part = run_optimization(steerer, [0], budgeted, journal=journal, cancel=cancel,
                            on_progress=stop_soon)
    kept = read_journal(journal.path).budget
    assert kept is not None and kept[2] == notes[-1] and "fit" in kept[2]
    assert part.pso.iterations == kept[1] and part.cancelled
    resumed = run_optimization(
        steerer, [0], budgeted, journal=JournalFile(journal.path, resume=True)
    )
    assert (resumed.pso.particles, resumed.pso.iterations) == kept[:2]
    assert resumed.final_progress().total == resumed.final_progress().done


def test_a_budget_too_small_for_one_setting_is_refused_and_leaves_nothing_to_resume(
    steerer, split_plan, tmp_path
):
    import dataclasses

    tiny_budget = dataclasses.replace(split_plan, budget_seconds=1e-3)
    journal = JournalFile(tmp_path / "run.journal.jsonl")
    with pytest.raises(InvalidInputError, match="leaves no time to score a setting"):
        run_optimization(steerer, [0], tiny_budget, journal=journal)
    assert not journal.path.exists()  # no "interrupted run" offered for a refusal


def test_a_budget_is_checked_by_the_table():
    settings = RunSettings.from_values({"task": "t", "budget": 5})
    assert settings["budget"] == 5.0
    with pytest.raises(
        InvalidInputError, match="The time budget must be a finite number of 0 or more"
    ):
        RunSettings.from_values({"task": "t", "budget": -1})


def test_the_tab_scores_baseline_and_settings_with_the_unticked_vector_on(tiny_session, tmp_path):
    """Two active vectors, only the first ticked: the second stays on for the
    baseline and for every setting (one scoring condition), which the scores
    bear out against the fitness computed by hand on the same documents."""
    from steering import recapture
    from tests.support.forms import form, views
    from ui.optimize_tab import TASKS_DIR, OptimizeActions
    from ui.steering_tab import SteeringActions

    steering = SteeringActions(tiny_session, tmp_path)
    for prompts in (("I love this.", "I hate this."), ("Calm and quiet.", "Loud and angry.")):
        list(steering.add_vector(*prompts, 1, 2.0))
    first, second = tiny_session.current().steerer.vectors
    actions = OptimizeActions(tiny_session, steering.save_dir)
    values = form(actions, vectors=[first.id], limit=10, particles=2, iterations=1)
    result = views(actions.optimize(*values))[-1][5]
    steerer = tiny_session.current().steerer
    assert steerer.vectors == (first, second)
    config = LmEvalFitness(steerer, result.fitness, split=result.split, side=SEARCH)
    assert result.baseline.score == pytest.approx(config.metrics([second]).target, abs=1e-12)
    for evaluation in result.evaluations[:2]:
        (layer,), (alpha,) = evaluation.layers, evaluation.alphas
        moved = recapture(steerer, first, layer).with_alpha(alpha)
        assert evaluation.score == pytest.approx(
            config.metrics([moved, second]).target, abs=1e-12
        )
    assert str(TASKS_DIR) == result.fitness.include_path
