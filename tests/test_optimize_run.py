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
    FitnessConfig,
    FitnessError,
    LmEvalFitness,
    OptimizationCancelled,
    PsoConfig,
    SearchSpace,
    apply_best,
    run_optimization,
)
from steering import capture_vector, recapture, steerer_for
from steering.errors import IncompatibleVectorError, InvalidInputError

_TEXTS = [
    ("I love it", 0),
    ("I hate it", 1),
    ("Great day", 0),
    ("Awful day", 1),
    ("So happy", 0),
    ("So sad", 1),
    ("Nice food", 0),
    ("Bad food", 1),
]

_YAML = """\
task: tiny_sentiment
dataset_path: json
dataset_kwargs:
  data_files:
    train: {folder}/train.jsonl
    test: {folder}/test.jsonl
training_split: train
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{text}}}} Sentiment:"
target_delimiter: " "
doc_to_choice: ["positive", "negative"]
doc_to_target: label
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""


@pytest.fixture(scope="module")
def task_folder(tmp_path_factory):
    """A two-choice task of 8 short documents (and 4 few-shot examples)."""
    folder = tmp_path_factory.mktemp("tiny_task")
    rows = [json.dumps({"text": t, "label": label}) for t, label in _TEXTS]
    (folder / "test.jsonl").write_text("\n".join(rows) + "\n")
    train = [json.dumps({"text": t + "!", "label": label}) for t, label in _TEXTS[:4]]
    (folder / "train.jsonl").write_text("\n".join(train) + "\n")
    (folder / "tiny.yaml").write_text(_YAML.format(folder=folder))
    # a second task (other prompt, tagged) and a group of both
    other = _YAML.format(folder=folder).replace("task: tiny_sentiment", "task: tiny_mood")
    other = other.replace("Sentiment:", "Mood:") + "tag: tiny_tag\n"
    (folder / "mood.yaml").write_text(other)
    (folder / "group.yaml").write_text(
        "group: tiny_group\ntask: [tiny_sentiment, tiny_mood]\n"
        "aggregate_metric_list:\n  - metric: acc\n    weight_by_size: true\n"
    )
    return str(folder)


@pytest.fixture
def steerer(tiny):
    """The tiny model's Steerer with two active vectors: [0] is optimized, [1] is not."""
    s = steerer_for(tiny.model, tiny.tokenizer, tiny.name)
    s.reset()
    joy = capture_vector(s, ["I love this day", "so happy"], 1, 2.0, ["I hate this day", "so sad"])
    calm = capture_vector(s, ["calm and quiet"], 2, 0.5)
    s.set_vectors([joy, calm])
    yield s
    s.reset()


def _fitness(folder, **kw):
    return FitnessConfig(**({"task": "tiny_sentiment", "include_path": folder, "limit": 6} | kw))


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


def test_fitness_scores_equal_a_fresh_lm_eval_run(steerer, task_folder):
    """Requests built once and reused give what simple_evaluate gives, steered
    or not, with the few-shot examples it would draw; stderr is lm-eval's."""
    from lm_eval.evaluator import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    config = _fitness(task_folder, num_fewshot=2, batch_size=4)
    fitness = LmEvalFitness(steerer, config)
    steered = [recapture(steerer, steerer.vectors[0], 2).with_coeff(25.0)]
    ours = [fitness.evaluate(vectors) for vectors in ((), steered, (), steered)]
    assert ours[0] == ours[2] and ours[1] == ours[3]  # reuse is stable
    assert ours[0].responses != ours[1].responses  # and steering reaches the model

    for vectors, mine in ((), ours[0]), (steered, ours[1]):
        lm = HFLM(pretrained=steerer.model, tokenizer=steerer.tokenizer, batch_size=4)
        with steerer.applied(vectors):
            fresh = simple_evaluate(
                model=lm,
                tasks=["tiny_sentiment"],
                task_manager=TaskManager(include_path=task_folder, include_defaults=False),
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


def test_a_group_scores_like_lm_eval_and_a_tag_is_refused(steerer, task_folder):
    from lm_eval.api.metrics import mean_stderr
    from lm_eval.evaluator import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    group = LmEvalFitness(steerer, _fitness(task_folder, task="tiny_group", limit=4))
    ours = group.evaluate(())
    assert ours.samples == 8
    with steerer.unsteered():
        fresh = simple_evaluate(
            model=HFLM(pretrained=steerer.model, tokenizer=steerer.tokenizer, batch_size=8),
            tasks=["tiny_group"],
            task_manager=TaskManager(include_path=task_folder, include_defaults=False),
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
            [label for _, label in _TEXTS[:4]] * 2,
            zip(ours.responses[0::2], ours.responses[1::2], strict=True),
            strict=True,
        )
    ]
    assert sum(per_doc) / 8 == pytest.approx(ours.score)
    assert ours.stderr == pytest.approx(mean_stderr(per_doc))

    with pytest.raises(InvalidInputError, match="'tiny_tag' is an lm-eval tag"):
        LmEvalFitness(steerer, _fitness(task_folder, task="tiny_tag"))


def test_unknown_task_and_metric_fail_clearly(steerer, task_folder):
    with pytest.raises(
        InvalidInputError, match="'tiny_sentimnet' is not registered.*Did you mean 'tiny_sentiment'"
    ):
        LmEvalFitness(steerer, _fitness(task_folder, task="tiny_sentimnet"))
    with pytest.raises(
        InvalidInputError,
        match="Metric 'f1' is not reported by the task 'tiny_sentiment'; it reports: acc",
    ):
        LmEvalFitness(steerer, _fitness(task_folder, metric="f1"))
    with pytest.raises(InvalidInputError, match="filter 'strict' .* its filters are: none"):
        LmEvalFitness(steerer, _fitness(task_folder, metric="acc,strict"))


# ---------------------------------------------------------------- the run


def test_run_reports_progress_restores_vectors_and_leaves_no_trace(
    steerer, task_folder, tmp_path, monkeypatch
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
        _fitness(task_folder),
        SPACE,
        PsoConfig(particles=3, iterations=2, seed=4),
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


def test_same_seed_gives_the_same_history(steerer, task_folder):
    pso = PsoConfig(particles=3, iterations=2, seed=8)
    first = run_optimization(steerer, [0], _fitness(task_folder), SPACE, pso)
    second = run_optimization(steerer, [0], _fitness(task_folder), SPACE, pso)
    other = run_optimization(
        steerer, [0], _fitness(task_folder), SPACE, PsoConfig(particles=3, iterations=2, seed=9)
    )
    assert _comparable(first.history) == _comparable(second.history)
    assert [e.alphas for e in first.history] != [e.alphas for e in other.history]


def test_a_repeated_setting_is_not_scored_twice(steerer, task_folder, monkeypatch):
    paid = []
    score = LmEvalFitness.score

    def counting(self, vectors):
        paid.append(tuple((v.layer, v.coeff) for v in vectors))
        return score(self, vectors)

    monkeypatch.setattr(LmEvalFitness, "score", counting)
    space = SearchSpace(layer_min=1, layer_max=2, alpha_min=-0.5, alpha_max=0.5, alpha_decimals=0)
    result = run_optimization(
        steerer, [0], _fitness(task_folder), space, PsoConfig(particles=4, iterations=3, seed=0)
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


def test_an_lm_eval_failure_restores_the_vectors(steerer, task_folder, monkeypatch):
    from lm_eval.models.huggingface import HFLM

    originals, layers = steerer.vectors, steerer.steered_layers()
    calls = []
    real = HFLM.loglikelihood

    def failing(self, requests, disable_tqdm=False):
        calls.append(len(requests))
        if len(calls) == 3:
            raise RuntimeError("CUDA out of memory (simulated)")
        return real(self, requests, disable_tqdm=disable_tqdm)

    monkeypatch.setattr(HFLM, "loglikelihood", failing)
    with pytest.raises(
        FitnessError,
        match="lm-eval failed while scoring 'tiny_sentiment': RuntimeError: CUDA out of memory",
    ):
        run_optimization(
            steerer, [0], _fitness(task_folder), SPACE, PsoConfig(particles=3, iterations=2)
        )
    assert len(calls) == 3
    assert _unchanged(steerer, originals, layers)


def test_an_error_in_the_progress_callback_restores_the_vectors(steerer, task_folder):
    originals, layers = steerer.vectors, steerer.steered_layers()

    def broken(progress):
        if progress.done == 2:
            raise KeyError("ui went away")

    with pytest.raises(KeyError):
        run_optimization(
            steerer,
            [0],
            _fitness(task_folder),
            SPACE,
            PsoConfig(particles=2, iterations=2),
            on_progress=broken,
        )
    assert _unchanged(steerer, originals, layers)


def test_cancel_returns_the_evaluations_so_far_and_restores_the_vectors(steerer, task_folder):
    originals, layers = steerer.vectors, steerer.steered_layers()
    cancel = threading.Event()

    def on_progress(progress):
        if progress.done == 3:  # the baseline and two settings
            cancel.set()

    result = run_optimization(
        steerer,
        [0],
        _fitness(task_folder),
        SPACE,
        PsoConfig(particles=3, iterations=3),
        on_progress=on_progress,
        cancel=cancel,
    )
    assert result.cancelled
    assert len(result.history) == 3 and len(result.evaluations) == 2
    assert result.best in result.evaluations
    assert _unchanged(steerer, originals, layers)


def test_cancel_before_any_setting_is_scored_raises(steerer, task_folder):
    originals, layers = steerer.vectors, steerer.steered_layers()
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(OptimizationCancelled, match="cancelled before it started"):
        run_optimization(steerer, [0], _fitness(task_folder), SPACE, PsoConfig(), cancel=cancel)

    cancel.clear()
    with pytest.raises(OptimizationCancelled, match="before any steering setting was scored"):
        run_optimization(
            steerer,
            [0],
            _fitness(task_folder),
            SPACE,
            PsoConfig(particles=2, iterations=1),
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
def test_bad_selections_fail_before_any_work(steerer, task_folder, indices, space, message):
    originals = steerer.vectors
    with pytest.raises(InvalidInputError, match=message):
        run_optimization(steerer, indices, _fitness(task_folder), space, PsoConfig())
    assert steerer.vectors == originals


def test_an_unknown_task_fails_clearly_and_restores(steerer, task_folder):
    originals, layers = steerer.vectors, steerer.steered_layers()
    with pytest.raises(InvalidInputError, match="'nope' is not registered in the task folder"):
        run_optimization(steerer, [0], _fitness(task_folder, task="nope"), SPACE, PsoConfig())
    assert _unchanged(steerer, originals, layers)


# ---------------------------------------------------------------- apply_best


def test_apply_best_makes_the_best_setting_active(steerer, task_folder):
    originals = steerer.vectors
    result = run_optimization(
        steerer, [0], _fitness(task_folder), SPACE, PsoConfig(particles=3, iterations=2, seed=2)
    )
    applied = apply_best(steerer, result)
    assert steerer.vectors == applied
    best_layer, best_alpha = result.best.layers[0], result.best.alphas[0]
    assert (applied[0].layer, applied[0].coeff) == (best_layer, best_alpha)
    assert applied[0].prompts == originals[0].prompts
    assert applied[0].same_as(recapture(steerer, originals[0], best_layer).with_coeff(best_alpha))
    assert applied[1] is originals[1]  # not selected: untouched
    assert steerer.steered_layers() == sorted({best_layer, originals[1].layer})
    # what is applied scores what the run reported
    fitness = LmEvalFitness(steerer, _fitness(task_folder))
    assert fitness.score(applied)[0] == result.best.score


def test_apply_best_refuses_other_vectors_or_models(steerer, task_folder, tiny_factory):
    result = run_optimization(
        steerer, [0], _fitness(task_folder), SPACE, PsoConfig(particles=2, iterations=1)
    )
    before = steerer.vectors
    steerer.set_vectors([before[1], before[0]])
    with pytest.raises(
        InvalidInputError, match="The active vectors changed since this optimization ran: vector 1"
    ):
        apply_best(steerer, result)
    other = tiny_factory(seed=3)
    other_steerer = steerer_for(other.model, other.tokenizer, other.name)
    with pytest.raises(IncompatibleVectorError, match="found on tiny-llama"):
        apply_best(other_steerer, result)
