"""Task-pair vectors, PCA of paired differences, the strength unit."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from optimize.config.configs import FitnessConfig
from optimize.scoring.fitness import LmEvalFitness
from steering import (
    InvalidInputError,
    VectorSource,
    capture,
    load_vectors,
    recapture,
    save_vectors,
    steerer_for,
)
from steering.extract.base import pca_direction
from steering.extract.task_pairs import doc_key, reserved_keys
from steering.lm_eval_tasks import task_source
from steering.neutral import CALIBRATION_SENTENCES, neutral_sentences

TASKS = str(Path(__file__).resolve().parents[2] / "tasks")

ITEMS = [
    ("Review: a lovely day.\nAnswer:", " positive", [" negative"]),
    ("Question: How many legs has a spider?\nAnswer: ", "Eight", ["Six", "Four legs and a tail"]),
]


def reference_task_pairs(model, tokenizer, items, layer):
    """The task-pairs direction written plainly: one unbatched forward per
    text, lm-eval's split of context and answer tokens, the mean over the
    answer's tokens of hidden_states[layer], correct minus each wrong, mean."""

    def answer_state(context, answer):
        spaces = len(context) - len(context.rstrip())
        if spaces:
            context, answer = context[:-spaces], context[-spaces:] + answer
        bos = [tokenizer.bos_token_id]
        whole = bos + tokenizer.encode(context + answer, add_special_tokens=False)
        head = bos + tokenizer.encode(context, add_special_tokens=False)
        with torch.no_grad():
            hidden = model(torch.tensor([whole]), output_hidden_states=True).hidden_states
        return hidden[layer][0, len(head):].mean(dim=0)

    diffs = [
        answer_state(context, correct) - answer_state(context, wrong)
        for context, correct, wrongs in items
        for wrong in wrongs
    ]
    return torch.stack(diffs).mean(dim=0)


def _source(items, aggregate="mean"):
    return VectorSource(
        "task_pairs",
        {
            "task": "toy",
            "split": "training",
            "aggregate": aggregate,
            "items": items,
            "doc_keys": ["k1"],
        },
    )


def test_task_pairs_equals_a_plain_reference(tiny):
    steerer = steerer_for(tiny.model, tiny.tokenizer)
    for layer in (1, 3):
        vector = capture(steerer, _source(ITEMS), layer, 1.0)
        expected = reference_task_pairs(tiny.model, tiny.tokenizer, ITEMS, layer)
        torch.testing.assert_close(vector.direction, expected, rtol=0, atol=1e-5)
    assert "task toy" in vector.summary()


def test_task_pairs_from_a_shipped_task_equals_the_reference(tiny):
    steerer = steerer_for(tiny.model, tiny.tokenizer)
    source = task_source("steer_health", TASKS, docs=5, seed=3)
    assert source.inputs["split"] == "reserved" and len(source.inputs["items"]) == 5
    context, correct, wrongs = source.inputs["items"][0]
    assert context.startswith("Question: ") and correct.startswith(" ") and len(wrongs) == 3
    vector = capture(steerer, source, 2, 1.0)
    expected = reference_task_pairs(tiny.model, tiny.tokenizer, source.inputs["items"], 2)
    torch.testing.assert_close(vector.direction, expected, rtol=0, atol=1e-5)
    assert task_source("steer_health", TASKS, docs=5, seed=3) == source  # seeded


def test_build_documents_are_never_scored(tiny, tmp_path):
    steerer = steerer_for(tiny.model, tiny.tokenizer)
    vector = capture(steerer, task_source("steer_sentiment", TASKS, docs=30, seed=1), 2, 1.0)
    reserved = reserved_keys([vector])
    assert len(reserved) == 30
    steerer.add(vector)
    # sentiment_search words the same 100 documents differently: still left out.
    for limit in (None, 50):
        fitness = LmEvalFitness(steerer, FitnessConfig("sentiment_search", TASKS, limit=limit))
        scored = [doc_key(doc) for plan in fitness._plans for _, doc in plan.docs]
        assert not reserved & set(scored)
        assert len(scored) == (70 if limit is None else 50) and fitness.excluded == 30
    # a file keeps the recipe: loaded again, it excludes the same documents
    path = save_vectors(tmp_path / "v.safetensors", [vector], steerer.info)
    assert reserved_keys(load_vectors(path, steerer.info)) == reserved
    steerer.reset()
    unexcluded = LmEvalFitness(steerer, FitnessConfig("sentiment_search", TASKS, limit=None))
    assert unexcluded.samples == 100 and unexcluded.excluded == 0


def test_too_many_build_documents_are_refused():
    with pytest.raises(InvalidInputError, match="has 80 documents and no training split"):
        task_source("steer_health", TASKS, docs=80)
    with pytest.raises(InvalidInputError, match="not registered"):
        task_source("no_such_task", TASKS)


def test_pca_sign_points_towards_the_concept():
    torch.manual_seed(0)
    axis = torch.zeros(8)
    axis[2] = 1.0
    spread = torch.randn(12, 1) * 3.0 + 5.0  # pairs differ along the axis by 2..8
    differences = spread * axis + 0.05 * torch.randn(12, 8)
    direction = pca_direction(differences)
    assert float(direction @ axis) > 0
    assert abs(float(direction @ axis)) / float(direction.norm()) > 0.99
    # its length is the mean projection, on the scale of the difference of means
    assert float(direction.norm()) == pytest.approx(float((differences @ axis).mean()), rel=0.02)
    assert float(pca_direction(-differences) @ axis) < 0  # the concept swapped: flipped
    with pytest.raises(InvalidInputError, match="at least two pairs"):
        pca_direction(differences[:1])


def test_pca_diff_method_pairs_prompts_and_checks_counts(tiny):
    steerer = steerer_for(tiny.model, tiny.tokenizer)
    concept = ["I love this so much", "what a joy it is", "a wonderful bright day"]
    contrast = ["I hate this so much", "what a grief it is", "a dreadful grey day"]
    vector = capture(
        steerer,
        VectorSource("pca_diff", {"prompts": concept, "contrast_prompts": contrast}),
        2,
        1.0,
    )
    diffs = steerer.prompt_activations(concept)[:, 2] - steerer.prompt_activations(contrast)[:, 2]
    assert float((diffs @ vector.direction).mean()) > 0
    with pytest.raises(InvalidInputError, match="same number of each"):
        VectorSource("pca_diff", {"prompts": concept, "contrast_prompts": contrast[:2]})


def test_layer_norms_are_the_mean_token_norm_over_the_neutral_set(tiny):
    steerer = steerer_for(tiny.model, tiny.tokenizer)
    norms = steerer.layer_norms()
    texts = neutral_sentences(count=CALIBRATION_SENTENCES)
    assert len(texts) == CALIBRATION_SENTENCES
    # a plain reference: one unbatched forward per calibration sentence
    total = []
    for text in texts:
        ids = [tiny.tokenizer.bos_token_id, *tiny.tokenizer.encode(text, add_special_tokens=False)]
        with torch.no_grad():
            hidden = tiny.model(torch.tensor([ids]), output_hidden_states=True).hidden_states
        total.append(hidden[3][0, 1:].norm(dim=-1).mean())
    assert float(norms[3]) == pytest.approx(float(torch.stack(total).mean()), rel=1e-5)


def test_strength_round_trips_through_save_and_load(tiny, tmp_path):
    steerer = steerer_for(tiny.model, tiny.tokenizer)
    vector = capture(steerer, VectorSource.from_prompts(["I love it"], ["I hate it"]), 2, 1.0)
    assert vector.layer_norm == pytest.approx(float(steerer.layer_norms()[2]))
    half = vector.with_strength(0.5)
    assert half.strength == pytest.approx(0.5)
    assert float((half.alpha * half.direction).norm()) == pytest.approx(0.5 * vector.layer_norm)
    path = save_vectors(tmp_path / "v.safetensors", [half], steerer.info)
    (loaded,) = load_vectors(path, steerer.info)
    assert loaded.same_as(half)  # the raw alpha and the calibration norm, exactly
    assert (loaded.alpha, loaded.layer_norm, loaded.strength) == (
        half.alpha,
        half.layer_norm,
        half.strength,
    )
    moved = recapture(steerer, half, 3)
    assert moved.layer_norm == pytest.approx(float(steerer.layer_norms()[3]))


def test_cli_builds_a_task_or_pca_source_before_loading_a_model(tmp_path):
    from steering.__main__ import _parser, _source

    args = _parser().parse_args(
        ["capture", "--from-task", "steer_health", "--include-path", TASKS, "--docs", "4",
         "--method", "pca_diff", "--layer", "1", "--strength", "0.5", "--out", "x"]
    )
    source = _source(args)
    assert (source.method, source.inputs["aggregate"], len(source.inputs["items"])) == (
        "task_pairs",
        "pca",
        4,
    )
    (tmp_path / "c.txt").write_text("I love it\nwhat a joy\n")
    (tmp_path / "n.txt").write_text("I hate it\nwhat a grief\n")
    args = _parser().parse_args(
        ["capture", "--prompts", str(tmp_path / "c.txt"), "--contrast", str(tmp_path / "n.txt"),
         "--method", "pca_diff", "--layer", "1", "--alpha", "1", "--out", "x"]
    )
    assert _source(args).method == "pca_diff"
