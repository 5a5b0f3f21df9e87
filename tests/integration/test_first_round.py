"""A first round on fewer documents (optimize/run/first_round.py): the
search scores every setting on the first few documents, its best three
distinct settings are then scored on all of them, and the best of those is
the result. Checked against the plain search on those few documents and
against the fitness on all of them, through the journal (a run cancelled
among the finalists resumes to the same result), the result file, the form
and the command line."""

from __future__ import annotations

import json
import math
import threading

import pytest

from optimize import LmEvalFitness, OptimizationResult, PsoConfig, SearchSpace, run_optimization
from optimize.run.first_round import FINALISTS, check_first_round, pick_finalists
from optimize.config.guard import GuardSettings
from optimize.run.journal import FINAL, JournalFile, read_journal
from optimize.scoring.metrics import Metrics
from optimize.guard.objective import ObjectiveOptions, make_objective
from optimize.scoring.placing import SettingScorer
from optimize.config.space import Setting
from optimize.guard.split import HELDOUT, SEARCH, DocumentSplit
from optimize.scoring.evaluation import Evaluation
from steering import save_vectors
from steering.errors import InvalidInputError
from tests.support.tasks import sentiment_fitness, sentiment_run_argv

SPACE = SearchSpace(layer_min=1, layer_max=3, alpha_min=-30.0, alpha_max=30.0, alpha_decimals=0)
PSO = PsoConfig(particles=3, iterations=3, seed=4)


def _seen(evaluations):
    return [(e.iteration, e.particle, e.setting, dict(e.metrics), e.cached) for e in evaluations]


def _evaluation(particle, score, kl=math.nan, layer=1, alpha=1.0):
    metrics = Metrics({"target": score, "target_stderr": 0.0, "kl": kl})
    return Evaluation.scored(0, particle, Setting((layer,), (alpha,)), metrics, 0.1)


def test_finalists_are_the_best_distinct_settings_the_earlier_first_on_a_tie():
    target = make_objective("target")
    found = [
        _evaluation(0, 0.5, alpha=1.0),
        _evaluation(1, 0.7, alpha=2.0),
        _evaluation(2, 0.7, alpha=2.0),  # the same setting again (a cache hit)
        _evaluation(3, 0.6, alpha=3.0),
        _evaluation(4, 0.7, alpha=4.0),  # ties the best: ranks after it
        _evaluation(5, math.nan, alpha=5.0),  # could not be scored: ranks last
    ]
    picked = pick_finalists(found, target, 3)
    assert [e.particle for e in picked] == [1, 4, 3]
    assert [e.particle for e in pick_finalists(found, target, 10)] == [1, 4, 3, 0, 5]
    # the guarded objective: of two equal targets within the budget, the smaller KL first
    guarded = make_objective("guarded", options=ObjectiveOptions(kl_budget=0.5))
    gentle = [_evaluation(0, 0.7, kl=0.4, alpha=1.0), _evaluation(1, 0.7, kl=0.1, alpha=2.0),
              _evaluation(2, 0.9, kl=0.9, alpha=3.0)]  # fmt: skip
    assert [e.particle for e in pick_finalists(gentle, guarded, 3)] == [1, 0, 2]


def test_a_first_round_searches_the_first_documents_and_recommends_the_best_finalist_on_all(
    steerer, sentiment_task
):
    originals = steerer.vectors
    full = LmEvalFitness(steerer, sentiment_fitness(sentiment_task))  # 6 documents
    few = LmEvalFitness(steerer, sentiment_fitness(sentiment_task), first=2)
    alone = run_optimization(steerer, [0], few, SPACE, PSO)  # the first round's search by itself
    phases = []
    result = run_optimization(
        steerer, [0], full, SPACE, PSO, first_round=few,
        on_progress=lambda p: phases.append((p.phase, p.done, p.total)),
    )  # fmt: skip
    assert steerer.vectors == originals
    # The first round is exactly the search on the first 2 documents.
    assert result.first_round.samples == 2
    assert _seen(result.first_round.evaluations) == _seen(alone.evaluations)
    # Its best three distinct settings, scored on all 6 documents, are the history.
    finals = pick_finalists(alone.evaluations, result.ranking, FINALISTS)
    assert len(finals) == FINALISTS
    assert [e.setting for e in result.evaluations] == [e.setting for e in finals]
    assert [(e.iteration, e.particle) for e in result.evaluations] == [(PSO.iterations, r) for r in range(3)]
    on_all = SettingScorer(steerer, originals, [0], full)
    for evaluation in result.evaluations:
        assert dict(evaluation.metrics) == pytest.approx(dict(on_all(evaluation.setting)), abs=1e-9)
    assert result.best == make_objective("target").best(result.evaluations)
    assert result.baseline.score == full.metrics(()).target and result.samples == 6
    # Progress: the search as "first_round", then each finalist, counted in the total.
    total = 1 + PSO.evaluations + FINALISTS
    assert phases[0] == ("search", 1, total)
    assert {p for p, _, _ in phases[1 : 1 + PSO.evaluations]} == {"first_round"}
    assert phases[-3:] == [("finalists", total - 2, total), ("finalists", total - 1, total),
                           ("finalists", total, total)]  # fmt: skip
    # The result file keeps both.
    again = OptimizationResult.from_dict(json.loads(json.dumps(result.to_dict())))
    assert _seen(again.first_round.evaluations) == _seen(result.first_round.evaluations)
    assert _seen(again.history) == _seen(result.history) and again.best == result.best
    assert again.final_progress().done == again.final_progress().total == total


def test_a_run_cancelled_among_the_finalists_resumes_to_the_same_result(
    steerer, sentiment_task, tmp_path
):
    full = LmEvalFitness(steerer, sentiment_fitness(sentiment_task))
    few = LmEvalFitness(steerer, sentiment_fitness(sentiment_task), first=2)
    whole = run_optimization(steerer, [0], full, SPACE, PSO, first_round=few)
    cancel = threading.Event()
    journal = JournalFile(tmp_path / "run.journal.jsonl")

    def stop_after_one_finalist(progress):
        if progress.phase == "finalists":
            cancel.set()

    part = run_optimization(
        steerer, [0], full, SPACE, PSO, first_round=few, cancel=cancel, journal=journal,
        on_progress=stop_after_one_finalist,
    )  # fmt: skip
    assert part.cancelled and len(part.evaluations) == 1
    kept = read_journal(journal.path)
    assert len(kept.final) == 1 and kept.identity["first_round"] == 2
    scored = []

    class Counting:  # the full fitness, counting what it scores
        def __getattr__(self, name):
            return getattr(full, name)

        def metrics(self, vectors):
            scored.append(vectors)
            return full.metrics(vectors)

    resumed = run_optimization(
        steerer, [0], Counting(), SPACE, PSO, first_round=few,
        journal=JournalFile(journal.path, resume=True),
    )  # fmt: skip
    assert _seen(resumed.history) == _seen(whole.history)
    assert _seen(resumed.first_round.evaluations) == _seen(whole.first_round.evaluations)
    assert len(scored) == FINALISTS - 1  # only the finalists not yet scored ran
    assert FINAL == "final"
    # Another first round is another run: its journal is not resumed.
    other = LmEvalFitness(steerer, sentiment_fitness(sentiment_task), first=3)
    with pytest.raises(InvalidInputError, match="first_round"):
        run_optimization(
            steerer, [0], full, SPACE, PSO, first_round=other,
            journal=JournalFile(journal.path, resume=True),
        )  # fmt: skip


def test_a_first_round_scores_the_first_searched_documents_never_a_held_out_one(
    steerer, sentiment_task
):
    split = DocumentSplit(0.5, seed=3)
    searched = LmEvalFitness(steerer, sentiment_fitness(sentiment_task), split=split, side=SEARCH)
    held = LmEvalFitness(steerer, sentiment_fitness(sentiment_task), split=split, side=HELDOUT)
    first = GuardSettings(holdout_fraction=0.5).first_round_fitness(
        steerer, sentiment_fitness(sentiment_task), None, 3, 2
    )
    def ids(fitness):
        return [doc_id for plan in fitness._plans for doc_id, _ in plan.docs]

    assert first.target.samples == 2 and ids(first.target) == ids(searched)[:2]
    assert not set(ids(first.target)) & set(ids(held))
    # A first round as large as the searched side saves nothing: refused before any scoring.
    as_large = LmEvalFitness(steerer, sentiment_fitness(sentiment_task), split=split, side=SEARCH, first=3)
    with pytest.raises(InvalidInputError, match="fewer documents than the search's 3, got 3"):
        run_optimization(steerer, [0], searched, SPACE, PSO, first_round=as_large)


def test_a_first_round_must_score_fewer_documents_of_a_task(sentiment_task):
    assert check_first_round(0, 6) == 0 and check_first_round(2, 6) == 2 and check_first_round(50, None) == 50
    for items in (6, 7):
        with pytest.raises(InvalidInputError, match=r"fewer documents than the limit \(6\)"):
            check_first_round(items, 6)
    with pytest.raises(InvalidInputError, match="The first round must be 0 or more"):
        check_first_round(-1, 6)
    with pytest.raises(InvalidInputError, match="concept strength"):
        check_first_round(2, 6, scores_task=False)
    with pytest.raises(InvalidInputError, match="concept strength"):
        GuardSettings(objective="concept").check_first_round(sentiment_fitness(sentiment_task), 2)
    assert GuardSettings().check_first_round(sentiment_fitness(sentiment_task), 2) == 2


def test_the_form_takes_a_first_round_and_refuses_one_as_large_as_the_limit():
    from ui.optimize_form import NAMES, parse_request

    from optimize.config.table import BY_NAME

    values = {name: BY_NAME[name].default for name in NAMES} | {
        "limit": 20, "layer_min": 2, "layer_max": 20, "unit": "alpha",
    }  # the table's defaults, a layer range and the limit the first round must stay under
    request = parse_request(["v"], *[(values | {"first_round": 5})[name] for name in NAMES])
    assert request.first_round == 5
    assert parse_request(["v"], *[(values | {"first_round": None})[n] for n in NAMES]).first_round == 0
    assert parse_request(["v"], *values.values()).first_round == 0  # the default: none
    for bad, message in ((20, "fewer documents than the limit"), (2.5, "whole number"),
                         (-3, "0 or more")):  # fmt: skip
        with pytest.raises(InvalidInputError, match=message):
            parse_request(["v"], *[(values | {"first_round": bad})[name] for name in NAMES])


def test_the_command_line_runs_a_first_round_and_says_so(
    optimize_cli, steerer, tiny_dir, sentiment_task, tmp_path
):
    vectors = save_vectors(tmp_path / "v.safetensors", steerer.vectors[:1], steerer.info)
    done = optimize_cli(
        *sentiment_run_argv(tiny_dir, vectors, sentiment_task),
        *("--out", str(tmp_path / "r.json"), "--first-round", "2"),
    )
    assert done.code == 0, done.err
    out = done.out
    assert "first round: " in out and "settings scored on the first 2 documents" in out
    assert "3 documents searched (50% of the task held out" in out  # the finalists' documents
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["first_round"]["samples"] == 2 and len(saved["history"]) == 1 + FINALISTS
    assert all(e["iteration"] == 2 for e in saved["history"][1:])  # the round after the search


def test_the_plan_line_says_what_each_round_scores():
    from ui.optimize_layout import plan_line

    line = plan_line(6, 5, 100, "guarded", 25)
    assert "scores 30 settings (6 particles × 5 iterations) on the first 25 documents each" in line
    assert "then the best 3 of them and the unsteered baseline on 100 documents" in line
    plain = "scores 31 settings (6 particles × 5 iterations, plus the unsteered baseline) on 100"
    for off in (0, None, "", 100, 150, "x"):  # none, or not under the limit: the plain plan
        assert plain in plan_line(6, 5, 100, "guarded", off), off
    assert "first 25" not in plan_line(6, 5, 100, "concept", 25)  # concept strength: no task
