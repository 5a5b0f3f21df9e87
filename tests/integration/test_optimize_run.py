"""run_optimization and the lm-eval fitness on the tiny random Llama with a
tiny local task: restore on success, error and cancel, determinism, the
fitness cache, progress, apply_best, and scores equal to lm-eval's own."""

from __future__ import annotations

import json
import logging
import random
import threading

import numpy as np
import pytest

from optimize import (
    FitnessError,
    LmEvalFitness,
    OptimizationCancelled,
    OptimizationResult,
    PsoConfig,
    SearchSpace,
    apply_best,
    run_optimization,
)
from optimize.run.optimization import RunPlan
from optimize.scoring.prefix import PrefixScorer
from steering import recapture, steerer_for
from steering.errors import IncompatibleVectorError, InvalidInputError
from tests.support.tasks import SENTIMENT_TEXTS, sentiment_fitness


def _lm(steerer, folder, **kw):
    """The lm-eval fitness a run is given (the caller builds it)."""
    return LmEvalFitness(steerer, sentiment_fitness(folder, **kw))


SPACE = SearchSpace(layer_min=0, layer_max=3, alpha_min=-30.0, alpha_max=30.0)


def _unchanged(steerer, originals, layers):
    return (
        len(steerer.vectors) == len(originals)
        and all(a is b for a, b in zip(steerer.vectors, originals, strict=True))
        and all(a.same_as(b) for a, b in zip(steerer.vectors, originals, strict=True))
        and steerer.steered_layers() == layers
    )


def _comparable(history):
    return [
        (e.iteration, e.particle, e.layers, e.alphas, e.score, e.stderr, e.cached) for e in history
    ]


# ---------------------------------------------------------------- the fitness


def test_fitness_scores_equal_a_fresh_lm_eval_run(steerer, sentiment_task):
    """Requests built once and reused give what simple_evaluate gives, steered
    or not, with the few-shot examples it would draw; stderr is lm-eval's."""
    from lm_eval.evaluator import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    config = sentiment_fitness(sentiment_task, num_fewshot=2, batch_size=4)
    fitness = LmEvalFitness(steerer, config)
    steered = [recapture(steerer, steerer.vectors[0], 2).with_alpha(25.0)]
    ours = [fitness.evaluate(vectors) for vectors in ((), steered, (), steered)]
    assert ours[0] == ours[2] and ours[1] == ours[3]  # reuse is stable
    assert ours[0].responses != ours[1].responses  # and steering reaches the model

    for vectors, mine in ((), ours[0]), (steered, ours[1]):
        lm = HFLM(pretrained=steerer.model, tokenizer=steerer.tokenizer, batch_size=4)
        with steerer.applied(vectors):
            fresh = simple_evaluate(
                model=lm,
                tasks=["tiny_sentiment"],
                task_manager=TaskManager(include_path=sentiment_task, include_defaults=False),
                num_fewshot=2,
                limit=6,
                bootstrap_iters=10,  # > 0 for acc_stderr; for a mean it is analytic
                log_samples=False,
                random_seed=None,
                numpy_random_seed=None,
                torch_random_seed=None,
            )
        reference = fresh["results"]["tiny_sentiment"]
        assert mine.score == reference["acc,none"]
        assert mine.stderr == pytest.approx(reference["acc_stderr,none"], rel=1e-12)
        assert mine.samples == 6


def test_a_group_scores_like_lm_eval_and_a_tag_is_refused(steerer, sentiment_task):
    from lm_eval.api.metrics import mean_stderr
    from lm_eval.evaluator import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    group = LmEvalFitness(steerer, sentiment_fitness(sentiment_task, task="tiny_group", limit=4))
    ours = group.evaluate(())
    assert ours.samples == 8
    with steerer.unsteered():
        fresh = simple_evaluate(
            model=HFLM(pretrained=steerer.model, tokenizer=steerer.tokenizer, batch_size=8),
            tasks=["tiny_group"],
            task_manager=TaskManager(include_path=sentiment_task, include_defaults=False),
            limit=4,
            bootstrap_iters=0,
            log_samples=False,
            random_seed=None,
            numpy_random_seed=None,
            torch_random_seed=None,
        )
    results = fresh["results"]
    assert ours.score == pytest.approx(results["tiny_group"]["acc,none"], abs=1e-12)
    # the standard error of the mean over the pooled documents of both tasks
    per_doc = [
        float(label == int(a[0] < b[0]))
        for label, (a, b) in zip(
            [label for _, label in SENTIMENT_TEXTS[:4]] * 2,
            zip(ours.responses[0::2], ours.responses[1::2], strict=True),
            strict=True,
        )
    ]
    assert sum(per_doc) / 8 == pytest.approx(ours.score)
    assert ours.stderr == pytest.approx(mean_stderr(per_doc))

    with pytest.raises(InvalidInputError, match="'tiny_tag' is an lm-eval tag"):
        LmEvalFitness(steerer, sentiment_fitness(sentiment_task, task="tiny_tag"))


def test_unknown_task_and_metric_fail_clearly(steerer, sentiment_task):
    with pytest.raises(
        InvalidInputError,
        match=r"'tiny_sentimnet' is not registered.*Did you mean 'tiny_sentiment'",
    ):
        LmEvalFitness(steerer, sentiment_fitness(sentiment_task, task="tiny_sentimnet"))
    with pytest.raises(
        InvalidInputError,
        match="Metric 'f1' is not reported by the task 'tiny_sentiment'; it reports: acc",
    ):
        LmEvalFitness(steerer, sentiment_fitness(sentiment_task, metric="f1"))
    with pytest.raises(InvalidInputError, match=r"filter 'strict' .* its filters are: none"):
        LmEvalFitness(steerer, sentiment_fitness(sentiment_task, metric="acc,strict"))


# ---------------------------------------------------------------- the run


def test_run_reports_progress_restores_vectors_and_leaves_no_trace(
    steerer, sentiment_task, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    originals, layers = steerer.vectors, steerer.steered_layers()
    root_handlers = list(logging.getLogger().handlers)
    np.random.seed(99)
    random.seed(99)
    np_state, py_state = np.random.get_state()[1].copy(), random.getstate()
    seen = []

    result = run_optimization(
        steerer,
        [0],
        RunPlan(_lm(steerer, sentiment_task), SPACE, PsoConfig(particles=3, iterations=2, seed=4)),
        on_progress=seen.append,
    )

    assert _unchanged(steerer, originals, layers)
    assert [p.done for p in seen] == list(range(1, 8)) and {p.total for p in seen} == {7}
    assert seen[0].latest == result.baseline and seen[0].best_score is None
    assert seen[-1].best_score == result.best.score
    assert [p.latest for p in seen] == result.history
    assert result.baseline.iteration == -1 and result.baseline.layers == ()
    assert [(e.iteration, e.particle) for e in result.evaluations] == [
        (i, p) for i in range(2) for p in range(3)
    ]
    assert result.best.score == max(e.score for e in result.evaluations)
    assert all(0 <= e.layers[0] <= 3 and -30 <= e.alphas[0] <= 30 for e in result.evaluations)
    assert result.gain_points == pytest.approx(100 * (result.best.score - result.baseline.score))
    assert (result.metric, result.samples, result.vector_indices) == ("acc,none", 6, (0,))
    assert not result.cancelled
    # no report.log, no new root handlers, the caller's RNG state untouched
    assert not (tmp_path / "report.log").exists()
    assert logging.getLogger().handlers == root_handlers
    assert np.array_equal(np.random.get_state()[1], np_state) and random.getstate() == py_state


def test_same_seed_gives_the_same_history(steerer, sentiment_task):
    pso = PsoConfig(particles=3, iterations=2, seed=8)
    first = run_optimization(steerer, [0], RunPlan(_lm(steerer, sentiment_task), SPACE, pso))
    second = run_optimization(steerer, [0], RunPlan(_lm(steerer, sentiment_task), SPACE, pso))
    other = run_optimization(
        steerer,
        [0],
        RunPlan(_lm(steerer, sentiment_task), SPACE, PsoConfig(particles=3, iterations=2, seed=9)),
    )
    assert _comparable(first.history) == _comparable(second.history)
    assert [e.alphas for e in first.history] != [e.alphas for e in other.history]


def test_a_repeated_setting_is_not_scored_twice(steerer, sentiment_task, monkeypatch):
    paid = []
    metrics, metrics_many = LmEvalFitness.metrics, LmEvalFitness.metrics_many

    def counting(self, vectors):
        paid.append(tuple((v.layer, v.alpha) for v in vectors))
        return metrics(self, vectors)

    def counting_many(self, settings):  # an iteration's settings, scored in one pass
        paid.extend(tuple((v.layer, v.alpha) for v in vectors) for vectors in settings)
        return metrics_many(self, settings)

    scores = LmEvalFitness.document_scores

    def counting_scores(self, vectors):  # the baseline, with its per-document values
        paid.append(tuple((v.layer, v.alpha) for v in vectors))
        return scores(self, vectors)

    monkeypatch.setattr(LmEvalFitness, "metrics", counting)
    monkeypatch.setattr(LmEvalFitness, "metrics_many", counting_many)
    monkeypatch.setattr(LmEvalFitness, "document_scores", counting_scores)
    space = SearchSpace(layer_min=1, layer_max=2, alpha_min=-0.5, alpha_max=0.5, alpha_decimals=0)
    result = run_optimization(
        steerer,
        [0],
        RunPlan(_lm(steerer, sentiment_task), space, PsoConfig(particles=4, iterations=3, seed=0)),
    )
    settings = {(e.layers, e.alphas) for e in result.evaluations}
    assert len(result.evaluations) == 12
    assert len(settings) <= 6  # 2 layers x alphas -0.5, 0, 0.5 (0.5 rounds to 1, clipped to 0.5)
    assert len(paid) == 1 + len(settings)  # the baseline, then each setting once
    assert sum(not e.cached for e in result.evaluations) == len(settings)
    first = {}
    for e in result.evaluations:
        first.setdefault((e.layers, e.alphas), e.score)
        assert e.score == first[(e.layers, e.alphas)]


def test_an_lm_eval_failure_restores_the_vectors(steerer, sentiment_task, monkeypatch):
    originals, layers = steerer.vectors, steerer.steered_layers()
    calls = []
    # where the model runs: one setting (the baseline), or an iteration's settings at once
    real, real_many = LmEvalFitness._run_requests, PrefixScorer.score_many

    def failing(self):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("CUDA out of memory (simulated)")
        return real(self)

    def failing_many(self, *args):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("CUDA out of memory (simulated)")
        return real_many(self, *args)

    monkeypatch.setattr(LmEvalFitness, "_run_requests", failing)
    monkeypatch.setattr(PrefixScorer, "score_many", failing_many)
    with pytest.raises(
        FitnessError,
        match="lm-eval failed while scoring 'tiny_sentiment': RuntimeError: CUDA out of memory",
    ):
        run_optimization(
            steerer,
            [0],
            RunPlan(_lm(steerer, sentiment_task), SPACE, PsoConfig(particles=3, iterations=2)),
        )
    assert len(calls) == 3
    assert _unchanged(steerer, originals, layers)


def test_an_error_in_the_progress_callback_restores_the_vectors(steerer, sentiment_task):
    originals, layers = steerer.vectors, steerer.steered_layers()

    def broken(progress):
        if progress.done == 2:
            raise KeyError("ui went away")

    with pytest.raises(KeyError):
        run_optimization(
            steerer,
            [0],
            RunPlan(_lm(steerer, sentiment_task), SPACE, PsoConfig(particles=2, iterations=2)),
            on_progress=broken,
        )
    assert _unchanged(steerer, originals, layers)


def test_cancel_returns_the_evaluations_so_far_and_restores_the_vectors(steerer, sentiment_task):
    originals, layers = steerer.vectors, steerer.steered_layers()
    cancel = threading.Event()

    def on_progress(progress):
        if progress.done == 3:  # the baseline and two settings
            cancel.set()

    result = run_optimization(
        steerer,
        [0],
        RunPlan(_lm(steerer, sentiment_task), SPACE, PsoConfig(particles=3, iterations=3)),
        on_progress=on_progress,
        cancel=cancel,
    )
    assert result.cancelled
    assert len(result.history) == 3 and len(result.evaluations) == 2
    assert result.best in result.evaluations
    assert _unchanged(steerer, originals, layers)


def test_cancel_before_any_setting_is_scored_raises(steerer, sentiment_task):
    originals, layers = steerer.vectors, steerer.steered_layers()
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(OptimizationCancelled, match="cancelled before it started"):
        run_optimization(
            steerer, [0], RunPlan(_lm(steerer, sentiment_task), SPACE, PsoConfig()), cancel=cancel
        )

    cancel.clear()
    with pytest.raises(OptimizationCancelled, match="before any steering setting was scored"):
        run_optimization(
            steerer,
            [0],
            RunPlan(_lm(steerer, sentiment_task), SPACE, PsoConfig(particles=2, iterations=1)),
            on_progress=lambda p: cancel.set(),
            cancel=cancel,
        )
    assert _unchanged(steerer, originals, layers)


@pytest.mark.parametrize(
    ("indices", "space", "message"),
    [
        ([], SPACE, "Select at least one vector"),
        ([2], SPACE, "There is no vector number 3: 2 vector\\(s\\) are active"),
        ([0, 0], SPACE, "Vector number 1 is selected twice"),
        ([0], SearchSpace(0, 4, -1, 1), "outside tiny-llama, which has layers 0 to 3"),
    ],
)
def test_bad_selections_fail_before_any_work(steerer, sentiment_task, indices, space, message):
    originals = steerer.vectors
    with pytest.raises(InvalidInputError, match=message):
        run_optimization(
            steerer, indices, RunPlan(_lm(steerer, sentiment_task), space, PsoConfig())
        )
    assert steerer.vectors == originals


def test_an_unknown_task_fails_clearly_and_restores(steerer, sentiment_task):
    originals, layers = steerer.vectors, steerer.steered_layers()
    with pytest.raises(InvalidInputError, match="'nope' is not registered in the task folder"):
        run_optimization(
            steerer, [0], RunPlan(_lm(steerer, sentiment_task, task="nope"), SPACE, PsoConfig())
        )
    assert _unchanged(steerer, originals, layers)


# ---------------------------------------------------------------- apply_best


def test_apply_best_makes_the_best_setting_active(steerer, sentiment_task):
    originals = steerer.vectors
    result = run_optimization(
        steerer,
        [0],
        RunPlan(_lm(steerer, sentiment_task), SPACE, PsoConfig(particles=3, iterations=2, seed=2)),
    )
    applied = apply_best(
        steerer, result, result.best
    )  # a run with no confirmation recommends nothing
    assert steerer.vectors == applied
    best_layer, best_alpha = result.best.layers[0], result.best.alphas[0]
    assert (applied[0].layer, applied[0].alpha) == (best_layer, best_alpha)
    assert applied[0].prompts == originals[0].prompts
    assert applied[0].same_as(recapture(steerer, originals[0], best_layer).with_alpha(best_alpha))
    assert applied[1] is originals[1]  # not selected: untouched
    assert steerer.steered_layers() == sorted({best_layer, originals[1].layer})
    # what is applied scores what the run reported
    fitness = LmEvalFitness(steerer, sentiment_fitness(sentiment_task))
    assert fitness.score(applied)[0] == result.best.score


def test_apply_best_refuses_other_vectors_or_models(steerer, sentiment_task, tiny_factory):
    result = run_optimization(
        steerer,
        [0],
        RunPlan(_lm(steerer, sentiment_task), SPACE, PsoConfig(particles=2, iterations=1)),
    )
    before = steerer.vectors
    steerer.set_vectors([before[1]])
    with pytest.raises(
        InvalidInputError, match="The active vectors changed since this optimization ran"
    ):
        apply_best(steerer, result, result.best)
    assert steerer.vectors == (before[1],)  # nothing changed by the refusal
    steerer.set_vectors(before)
    other = tiny_factory(seed=3)
    other_steerer = steerer_for(other.model, other.tokenizer, other.name)
    with pytest.raises(IncompatibleVectorError, match="found on tiny-llama"):
        apply_best(other_steerer, result, result.best)
    with pytest.raises(InvalidInputError, match=r"Nothing to apply|nothing is recommended"):
        apply_best(steerer, result)


# ---------------------------------------------------------------- held-out scoring


def test_held_out_scores_equal_a_direct_evaluation(steerer, sentiment_task, tmp_path):
    """After the search, the unsteered model and the best setting are scored on
    the held-out task: exactly what a separate LmEvalFitness gives them."""
    originals, layers = steerer.vectors, steerer.steered_layers()
    heldout = sentiment_fitness(sentiment_task, task="tiny_heldout", limit=None)
    seen = []
    result = run_optimization(
        steerer,
        [0],
        RunPlan(
            _lm(steerer, sentiment_task),
            SPACE,
            PsoConfig(particles=3, iterations=2, seed=5),
            heldout=LmEvalFitness(steerer, heldout),
        ),
        on_progress=seen.append,
    )
    assert _unchanged(steerer, originals, layers)
    scores = result.heldout
    assert scores is not None and scores.fitness == heldout and scores.samples == 6
    assert (scores.metric, scores.higher_is_better) == ("acc,none", True)
    # progress: the search as before, then one report per held-out scoring
    assert [p.done for p in seen] == list(range(1, 10)) and {p.total for p in seen} == {9}
    assert [p.phase for p in seen] == ["search"] * 7 + ["heldout"] * 2
    assert [p.latest for p in seen[:7]] == result.history and seen[7].latest is None
    # the held-out scores are those of the baseline and best settings, scored directly
    assert scores.baseline.layers == () and scores.baseline.is_baseline
    assert (scores.best.layers, scores.best.alphas) == (result.best.layers, result.best.alphas)
    assert (scores.best.iteration, scores.best.particle) == (
        result.best.iteration,
        result.best.particle,
    )
    direct = LmEvalFitness(steerer, heldout)
    best_vectors = [
        recapture(steerer, originals[0], result.best.layers[0]).with_alpha(result.best.alphas[0]),
        originals[1],
    ]
    # the baseline keeps vector 2, which the run does not tune: one scoring condition
    assert direct.score([originals[1]]) == (scores.baseline.score, scores.baseline.stderr)
    assert direct.score(best_vectors) == (scores.best.score, scores.best.stderr)
    assert scores.gain_points == pytest.approx(100 * (scores.best.score - scores.baseline.score))
    # and the search's own scores did not see those documents
    search = LmEvalFitness(steerer, sentiment_fitness(sentiment_task))
    assert search.score([originals[1]])[0] == result.baseline.score
    loaded = type(result).load(result.save(tmp_path / "run.json"))
    assert loaded.heldout == scores and loaded.to_dict() == result.to_dict()


def test_a_held_out_failure_restores_the_vectors(steerer, sentiment_task, monkeypatch):
    originals, layers = steerer.vectors, steerer.steered_layers()
    real = LmEvalFitness.evaluate  # held-out scores come through evaluate (per document)

    def failing(self, vectors):
        if self.config.task == "tiny_heldout" and vectors:
            raise FitnessError("held-out scoring failed (simulated)")
        return real(self, vectors)

    monkeypatch.setattr(LmEvalFitness, "evaluate", failing)
    with pytest.raises(FitnessError, match="held-out scoring failed"):
        run_optimization(
            steerer,
            [0],
            RunPlan(
                _lm(steerer, sentiment_task),
                SPACE,
                PsoConfig(particles=2, iterations=1),
                heldout=_lm(steerer, sentiment_task, task="tiny_heldout"),
            ),
        )
    assert _unchanged(steerer, originals, layers)


@pytest.mark.parametrize("cancel_at", ["search", "heldout"])
def test_a_cancel_skips_the_held_out_scores(steerer, sentiment_task, cancel_at):
    originals, layers = steerer.vectors, steerer.steered_layers()
    cancel = threading.Event()

    def on_progress(progress):
        if (cancel_at == "search" and progress.done == 3) or progress.phase == "heldout":
            cancel.set()

    result = run_optimization(
        steerer,
        [0],
        RunPlan(
            _lm(steerer, sentiment_task),
            SPACE,
            PsoConfig(particles=2, iterations=2),
            heldout=_lm(steerer, sentiment_task, task="tiny_heldout"),
        ),
        on_progress=on_progress,
        cancel=cancel,
    )
    assert result.cancelled and result.heldout is None
    assert len(result.evaluations) == (2 if cancel_at == "search" else 4)
    assert _unchanged(steerer, originals, layers)


def test_a_bad_held_out_task_fails_before_any_scoring(steerer, sentiment_task, monkeypatch):
    originals, layers = steerer.vectors, steerer.steered_layers()
    scored = []
    monkeypatch.setattr(LmEvalFitness, "metrics", lambda self, vectors: scored.append(1))
    with pytest.raises(InvalidInputError, match="'nope' is not registered in the task folder"):
        run_optimization(
            steerer,
            [0],
            RunPlan(
                _lm(steerer, sentiment_task),
                SPACE,
                PsoConfig(),
                heldout=_lm(steerer, sentiment_task, task="nope"),
            ),
        )
    with pytest.raises(InvalidInputError, match="held-out task is the search task"):
        run_optimization(
            steerer,
            [0],
            RunPlan(
                _lm(steerer, sentiment_task),
                SPACE,
                PsoConfig(),
                heldout=_lm(steerer, sentiment_task),
            ),
        )
    assert not scored
    assert _unchanged(steerer, originals, layers)


def test_cli_reports_the_held_out_scores(steerer, tiny_dir, sentiment_task, optimize_cli, tmp_path):
    from steering import save_vectors

    vectors = save_vectors(tmp_path / "v.safetensors", steerer.vectors[:1], steerer.info)
    out = tmp_path / "result.json"
    common = [
        *("--model", str(tiny_dir), "--vectors", str(vectors), "--out", str(out)),
        *("--include-path", sentiment_task, "--task", "tiny_sentiment", "--limit", "6"),
    ]

    def cli(*args):
        return optimize_cli(*common, *args)

    for args, message in [
        (("--heldout-task", "tiny_heldot"), "'tiny_heldot' is not registered"),
        (("--heldout-task", "tiny_sentiment"), "held-out task is the search task"),
        (("--heldout-limit", "3"), "--heldout-limit needs --heldout-task"),
    ]:
        bad = cli(*args)
        assert bad.code == 1 and message in bad.err and bad.err.count("\n") == 1
        assert not out.exists()

    ok = cli(
        *("--heldout-task", "tiny_heldout", "--heldout-limit", "0", "--quiet"),
        *("--particles", "2", "--iterations", "1", "--layer-max", "3"),
        *("--unit", "alpha", "--alpha-min", "-30", "--alpha-max", "30"),
    )
    assert ok.code == 0, ok.err
    data = json.loads(out.read_text())
    held = data["heldout"]
    assert held["task"] == "tiny_heldout" and held["samples"] == 6
    checked = data["verdict"]["candidate"] or {"layers": data["best"]["layers"]}
    assert held["fitness"]["limit"] is None and held["best"]["layers"] == checked["layers"]
    assert "held-out task tiny_heldout, 6 documents the search never saw" in ok.out
    assert f"({held['gain_points']:+.1f} points)" in ok.out
    # without a held-out task the task's own 6 documents are split: 2 held out (30 %),
    # 3 confirm (80 % of the rest) and 1 is searched
    split = cli(
        *("--quiet", "--particles", "2", "--iterations", "1", "--layer-max", "3"),
        *("--unit", "alpha", "--alpha-min", "-30", "--alpha-max", "30", "--kl-budget", "0.5"),
    )
    assert split.code == 0, split.err
    data = json.loads(out.read_text())
    assert data["split"] == {"fraction": 0.3, "seed": 0, "confirm": 0.8} and data["samples"] == 1
    assert data["heldout"]["samples"] == 2 and data["heldout"]["paired"]["documents"] == 2
    assert "held-out: the 2 held-out documents" in split.out
    assert "exact sign test, two-sided p" in split.out  # the held-out check's paired test
    assert ("Pareto front" in split.out) == bool(data["front"])


def test_apply_best_finds_its_vector_by_id_after_a_reorder(steerer, sentiment_task):
    """Vectors are found by their stable id, not their position: reordering the
    active set, or applying twice, still tunes the vector the run optimized."""
    result = run_optimization(
        steerer,
        [0],
        RunPlan(_lm(steerer, sentiment_task), SPACE, PsoConfig(particles=2, iterations=1)),
    )
    before = steerer.vectors
    steerer.set_vectors([before[1], before[0]])
    applied = apply_best(steerer, result, result.best)
    assert applied[0] is before[1]
    assert applied[1].id == before[0].id
    assert (applied[1].layer, applied[1].alpha) == (result.best.layers[0], result.best.alphas[0])
    assert apply_best(steerer, result, result.best)[1].same_as(applied[1])  # again: a no-op
    saved = OptimizationResult.from_dict(result.to_dict())
    assert saved.vectors[0].vector_id == before[0].id


def test_a_split_run_holds_out_documents_guards_with_kl_and_reports_the_front(
    steerer, sentiment_task, tmp_path
):
    """The held-out split and the KL guard end to end on the tiny model: the
    search scores one side of a seeded split, the held-out side gets the
    baseline and the recommended setting with a paired test, every evaluation
    carries "kl", and the result file holds the front and the recommendation."""
    from optimize.guard.kl import GuardedFitness, KlGuard
    from optimize.guard.objective import KL, ObjectiveOptions
    from optimize.guard.split import HELDOUT, SEARCH, DocumentSplit
    from steering.neutral import neutral_sentences

    split = DocumentSplit(0.5, seed=1)
    config = sentiment_fitness(sentiment_task, limit=None)
    search = LmEvalFitness(steerer, config, split=split, side=SEARCH)
    held = LmEvalFitness(steerer, config, split=split, side=HELDOUT)
    assert search.samples + held.samples == 8 and held.samples == 4
    searched = {d for p in search._plans for d, _ in p.docs}
    held_docs = {d for p in held._plans for d, _ in p.docs}
    assert not searched & held_docs and searched | held_docs == set(range(8))
    base = [steerer.vectors[1]]  # on for the baseline and every setting alike
    guarded = GuardedFitness(
        search, KlGuard(steerer, neutral_sentences(count=6), base=base), base=base
    )
    result = run_optimization(
        steerer,
        [0],
        RunPlan(
            guarded,
            SPACE,
            PsoConfig(particles=3, iterations=2, seed=0),
            heldout=held,
            objective="guarded",
            options=ObjectiveOptions(kl_budget=0.05),
        ),
    )
    assert result.split == split and result.samples == 4
    assert all(KL in e.metrics for e in result.history) and result.baseline.metrics[KL] == 0.0
    assert result.best == result.ranking.best(result.evaluations)
    scores = result.heldout
    assert scores is not None and scores.samples == 4 and scores.paired is not None
    assert scores.paired.documents == 4
    assert scores.baseline.score == held.score(base)[0]
    front = result.front  # only settings the baseline does not match on every count
    assert all(not e.cached and e.score > result.baseline.score for e in front)
    kls = [e.metrics[KL] for e in front]
    assert kls == sorted(kls)
    data = result.to_dict()
    assert data["version"] == 4
    assert data["split"] == {"fraction": 0.5, "seed": 1, "confirm": 0.0}
    assert len(data["front"]) == len(front) and data["verdict"]["headline"]
    loaded = type(result).load(result.save(tmp_path / "split.json"))
    assert loaded.to_dict() == data and loaded.heldout == scores
