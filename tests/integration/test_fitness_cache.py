"""The fitness's prefix cache: answers equal to lm-eval's own scoring at any
layer, alpha and batch size; the layers below the steering run once; the
store's size cap; the fallback to lm-eval for other models or on a mismatch."""

from __future__ import annotations

import logging
import math

import pytest
import torch
from transformers import (
    MistralConfig,
    MistralForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
)

from optimize import FitnessConfig, LmEvalFitness
from optimize.scoring import prefix
from optimize.scoring.prefix import PrefixScorer
from steering import capture_vector
from steering.models import LoadedModel
from tests.support.models import fresh_steerer, joy_vector
from tests.support.tasks import choices_fitness


def _assert_same(fast, slow, tol=1e-4):
    assert len(fast.responses) == len(slow.responses)
    for (ll_fast, greedy_fast), (ll_slow, greedy_slow) in zip(
        fast.responses, slow.responses, strict=True
    ):
        assert ll_fast == pytest.approx(ll_slow, abs=tol)
        assert greedy_fast == greedy_slow
    assert fast.score == slow.score


def _settings(steerer):
    n = steerer.info.num_layers
    return [
        (),
        [joy_vector(steerer, 0, 8.0)],
        [joy_vector(steerer, 1, -6.0)],
        [joy_vector(steerer, n - 1, 12.0)],
        [joy_vector(steerer, 1, 4.0), joy_vector(steerer, n - 1, -4.0)],
    ]


@pytest.mark.parametrize("batch_size, min_tokens", [(1, 0), (3, 0), (8, 0), (2, 1024)])
def test_answers_equal_lm_eval_at_every_layer_alpha_and_batch_size(
    tiny, choices_task, monkeypatch, batch_size, min_tokens
):
    """`min_tokens` 0 keeps the configured batch size exactly; 1024 fills batches."""
    monkeypatch.setattr(prefix, "MIN_BATCH_TOKENS", min_tokens)
    steerer = fresh_steerer(tiny)
    fast = LmEvalFitness(steerer, choices_fitness(choices_task, batch_size=batch_size))
    config = choices_fitness(choices_task, batch_size=batch_size)
    slow = LmEvalFitness(steerer, config, prefix_cache=False)
    assert fast.prefix_scorer is not None and slow.prefix_scorer is None
    rows = [int(b.ids.shape[0]) for b in fast.prefix_scorer.batches]
    if min_tokens == 0:
        assert max(rows) == batch_size
    else:
        assert max(rows) > batch_size
    # visit layers high, low, high again: later visits start from stored states
    settings = _settings(steerer)
    for vectors in settings + settings[::-1]:
        _assert_same(fast.evaluate(vectors), slow.evaluate(vectors))
    assert steerer.vectors == () and steerer.steered_layers() == []


def test_steering_reaches_the_scores(tiny, choices_task):
    steerer = fresh_steerer(tiny)
    fast = LmEvalFitness(steerer, choices_fitness(choices_task))
    plain = fast.evaluate(())
    for vectors in _settings(steerer)[1:]:
        assert fast.evaluate(vectors).responses != plain.responses


def test_repeated_evaluations_are_identical(tiny, choices_task):
    """A setting scored cold (computing the prefix) and warm (reading it) gives
    the same floats, bit for bit."""
    steerer = fresh_steerer(tiny)
    vectors = [joy_vector(steerer, 2, 5.0)]
    fast = LmEvalFitness(steerer, choices_fitness(choices_task, batch_size=2))
    first = fast.evaluate(vectors)
    assert fast.evaluate(vectors) == first
    fast.evaluate(())
    assert fast.evaluate(vectors) == first


def test_layers_below_the_steering_run_once(tiny, choices_task):
    steerer = fresh_steerer(tiny)
    n = steerer.info.num_layers
    fast = LmEvalFitness(steerer, choices_fitness(choices_task, batch_size=3))
    scorer = fast.prefix_scorer
    batches = len(scorer.batches)
    assert scorer.layer_runs == 0 and scorer.stored_layers == []

    scorer.layer_runs = 0
    fast.evaluate([joy_vector(steerer, 2, 3.0)])  # first visit: every layer, keeps 1 and 2
    assert scorer.layer_runs == n * batches
    assert scorer.stored_layers == [1, 2]

    # later visits start from the nearest stored layer at or below the steering
    for layer, alpha in [(2, -3.0), (3, 1.0), (2, 7.0)]:
        vectors = [joy_vector(steerer, layer, alpha)]
        scorer.layer_runs = 0
        fast.evaluate(vectors)
        assert scorer.layer_runs == (n - 2) * batches
    assert scorer.stored_layers == [1, 2, 3]

    scorer.layer_runs = 0
    fast.evaluate(())  # unsteered: from layer 3 to the top, and keeps the top
    assert scorer.layer_runs == (n - 3) * batches
    assert scorer.stored_layers == [1, 2, 3, 4]
    scorer.layer_runs = 0
    fast.evaluate(())
    assert scorer.layer_runs == 0


def test_the_unsteered_baseline_fills_the_store(tiny, choices_task):
    steerer = fresh_steerer(tiny)
    n = steerer.info.num_layers
    fast = LmEvalFitness(steerer, choices_fitness(choices_task))
    fast.evaluate(())
    assert fast.prefix_scorer.stored_layers == list(range(1, n + 1))
    fast.prefix_scorer.layer_runs = 0
    fast.evaluate([joy_vector(steerer, 1, 2.0)])
    assert fast.prefix_scorer.layer_runs == (n - 1) * len(fast.prefix_scorer.batches)


def test_no_room_keeps_nothing_and_runs_every_layer(tiny, choices_task):
    steerer = fresh_steerer(tiny)
    n = steerer.info.num_layers
    fast = LmEvalFitness(steerer, choices_fitness(choices_task), cache_bytes=0)
    slow = LmEvalFitness(steerer, choices_fitness(choices_task), prefix_cache=False)
    scorer = fast.prefix_scorer
    for vectors in _settings(steerer):
        scorer.layer_runs = 0
        _assert_same(fast.evaluate(vectors), slow.evaluate(vectors))
        assert scorer.layer_runs == n * len(scorer.batches)
    assert scorer.stored_layers == [] and scorer.stored_bytes == 0


def test_a_small_cap_keeps_every_kth_layer(tiny, choices_task):
    steerer = fresh_steerer(tiny)
    probe = LmEvalFitness(steerer, choices_fitness(choices_task))
    per_layer = probe.prefix_scorer._bytes_per_layer
    fast = LmEvalFitness(steerer, choices_fitness(choices_task), cache_bytes=2 * per_layer)
    slow = LmEvalFitness(steerer, choices_fitness(choices_task), prefix_cache=False)
    for vectors in _settings(steerer):
        _assert_same(fast.evaluate(vectors), slow.evaluate(vectors))
    assert fast.prefix_scorer.stored_layers == [2, 4]
    assert fast.prefix_scorer.stored_bytes <= 2 * per_layer


def test_gpt2_is_scored_through_lm_eval(tiny_gpt2, choices_task, caplog):
    steerer = fresh_steerer(tiny_gpt2)
    with caplog.at_level(logging.INFO, logger="optimize.scoring.prefix"):
        fitness = LmEvalFitness(steerer, choices_fitness(choices_task))
    assert fitness.prefix_scorer is None
    assert "model type 'gpt2'" in caplog.text
    plain = fitness.evaluate(())
    steered = fitness.evaluate([joy_vector(steerer, 1, 20.0)])
    assert steered.responses != plain.responses
    assert all(math.isfinite(ll) for ll, _ in steered.responses)
    assert steerer.steered_layers() == []


def test_a_mismatch_with_lm_eval_falls_back(tiny, choices_task, monkeypatch, caplog):
    steerer = fresh_steerer(tiny)
    run_layers = PrefixScorer._run_layers

    def off_by_a_little(self, hidden, start, stop, keep=None):
        return run_layers(self, hidden, start, stop, keep) + 1e-2

    monkeypatch.setattr(PrefixScorer, "_run_layers", off_by_a_little)
    with caplog.at_level(logging.WARNING, logger="optimize.scoring.prefix"):
        fitness = LmEvalFitness(steerer, choices_fitness(choices_task))
    assert fitness.prefix_scorer is None
    assert "prefix cache off" in caplog.text and "lm-eval's is" in caplog.text
    monkeypatch.undo()
    reference = LmEvalFitness(steerer, choices_fitness(choices_task), prefix_cache=False)
    vectors = [joy_vector(steerer, 1, 5.0)]
    assert fitness.evaluate(vectors) == reference.evaluate(vectors)


def test_a_part_checked_with_another_skips_the_check_and_still_equals_lm_eval(
    tiny, choices_task, monkeypatch
):
    steerer = fresh_steerer(tiny)
    checks = []
    differs = PrefixScorer._differs_from_lm_eval

    def counted(self, lm, requests):
        checks.append(len(requests))
        return differs(self, lm, requests)

    monkeypatch.setattr(PrefixScorer, "_differs_from_lm_eval", counted)
    head = LmEvalFitness(steerer, choices_fitness(choices_task))
    tail = LmEvalFitness(steerer, choices_fitness(choices_task), checked_with=head)
    assert len(checks) == 1 and tail.prefix_scorer is not None
    slow = LmEvalFitness(steerer, choices_fitness(choices_task), prefix_cache=False)
    for vectors in _settings(steerer):
        _assert_same(tail.evaluate(vectors), slow.evaluate(vectors))


def test_a_part_checked_with_one_that_fell_back_falls_back_too(tiny, choices_task, monkeypatch):
    steerer = fresh_steerer(tiny)
    monkeypatch.setattr(PrefixScorer, "_differs_from_lm_eval", lambda *a: "a forced difference")
    head = LmEvalFitness(steerer, choices_fitness(choices_task))
    tail = LmEvalFitness(steerer, choices_fitness(choices_task), checked_with=head)
    assert head.prefix_scorer is None and tail.prefix_scorer is None


def test_checked_with_another_model_is_refused(tiny, tokenizer, choices_task):
    head = LmEvalFitness(fresh_steerer(tiny), choices_fitness(choices_task))
    loaded = LoadedModel(_tiny_other("qwen2", tokenizer), tokenizer, "tiny-qwen2")
    other = fresh_steerer(loaded)  # the steerer holds its model weakly: `loaded` keeps it
    with pytest.raises(ValueError, match="same task on the same model"):
        LmEvalFitness(other, choices_fitness(choices_task), checked_with=head)


def _tiny_other(kind, tokenizer):
    torch.manual_seed(3)
    common = dict(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    if kind == "mistral":  # a window shorter than the long document
        return MistralForCausalLM(MistralConfig(sliding_window=16, **common)).eval()
    if kind == "qwen2":
        return Qwen2ForCausalLM(Qwen2Config(**common)).eval()
    return Qwen3ForCausalLM(Qwen3Config(head_dim=8, **common)).eval()


@pytest.mark.parametrize("kind", ["mistral", "qwen2", "qwen3"])
def test_other_supported_layouts_equal_lm_eval(kind, tokenizer, choices_task):
    loaded = LoadedModel(_tiny_other(kind, tokenizer), tokenizer, f"tiny-{kind}")
    steerer = fresh_steerer(loaded)
    fast = LmEvalFitness(steerer, choices_fitness(choices_task, batch_size=4))
    slow = LmEvalFitness(steerer, choices_fitness(choices_task, batch_size=4), prefix_cache=False)
    assert fast.prefix_scorer is not None
    for vectors in _settings(steerer):
        _assert_same(fast.evaluate(vectors), slow.evaluate(vectors))
    steerer.reset()


# lm-eval's own scoring of SmolLM2, the reference, costs minutes: full tier
@pytest.mark.full
@pytest.mark.parametrize("task, limit", [("steer_sentiment", 16), ("steer_health", 6)])
def test_smollm2_answers_equal_lm_eval(smol, task, limit, monkeypatch):
    """One-token choices (sentiment) and multi-token answer texts (health)."""
    from pathlib import Path

    tasks = str(Path(__file__).resolve().parents[2] / "tasks")
    steerer = fresh_steerer(smol)
    joy, grief = ["What a wonderful, happy day."], ["What a terrible, sad day."]
    settings = [
        [capture_vector(steerer, joy, 5, 6.0, grief)],
        [capture_vector(steerer, joy, 27, 8.0, grief)],
        [capture_vector(steerer, joy, 8, 2.0, grief), capture_vector(steerer, joy, 20, 3.0, grief)],
    ]
    config = FitnessConfig(task, include_path=tasks, limit=limit)
    slow = LmEvalFitness(steerer, config, prefix_cache=False)
    expected = [slow.evaluate(vectors) for vectors in settings]
    for batch_size, min_tokens in ((1, 0), (8, 1024)):
        monkeypatch.setattr(prefix, "MIN_BATCH_TOKENS", min_tokens)
        config = FitnessConfig(task, include_path=tasks, limit=limit, batch_size=batch_size)
        fast = LmEvalFitness(steerer, config)
        assert fast.prefix_scorer is not None
        for vectors, reference in zip(settings, expected, strict=True):
            _assert_same(fast.evaluate(vectors), reference)
