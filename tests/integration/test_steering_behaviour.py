"""Real behaviour on the embedded SmolLM2-135M-Instruct."""

from __future__ import annotations

import pytest
import torch
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from steering import (
    GenerationSettings,
    capture_vector,
    complete,
    load_vectors,
    save_vectors,
    steerer_for,
)
from steering.sentiment import next_word_sentiment

JOY = [
    "I am so happy and full of joy today!",
    "What a wonderful, delightful day, I love everything.",
    "We laughed and celebrated the good news together.",
    "I feel cheerful, grateful and excited.",
]
GRIEF = [
    "I am so sad and full of grief today.",
    "What a terrible, miserable day, I hate everything.",
    "We cried and mourned the bad news together.",
    "I feel gloomy, hopeless and lonely.",
]
OPENINGS = [
    "Today I feel",
    "My week has been",
    "The news this morning made me",
    "Honestly, life right now is",
]
LAYER = 8


def logits(loaded, text="The weather today is"):
    ids = loaded.tokenizer(text, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        return loaded.model(ids).logits


@pytest.fixture
def joy_vector(smol):
    steerer = steerer_for(smol.model, smol.tokenizer, smol.name)
    return steerer, capture_vector(steerer, JOY, LAYER, 4.0, GRIEF)


def test_joy_vector_moves_next_words_and_greedy_completions_the_expected_way(smol, joy_vector):
    steerer, vector = joy_vector
    model, tokenizer = smol.model, smol.tokenizer
    # 16 tokens: mean lexicon +0.27 unsteered, +0.82 joy, -0.07 grief (24 cost half as much again)
    settings = GenerationSettings(max_new_tokens=16)

    vader = SentimentIntensityAnalyzer()  # a lexicon judge, independent of the model

    def measure():
        texts = [complete(model, tokenizer, opening, settings) for opening in OPENINGS]
        lexicon = sum(vader.polarity_scores(text)["compound"] for text in texts) / len(texts)
        return next_word_sentiment(model, tokenizer, OPENINGS), lexicon

    base_next, base_lexicon = measure()
    steerer.set_vectors([vector.with_alpha(4.0)])
    joy_next, joy_lexicon = measure()
    steerer.set_vectors([vector.with_alpha(-4.0)])
    grief_next, grief_lexicon = measure()
    steerer.reset()

    assert joy_next > base_next + 1.0 > grief_next + 2.0
    assert joy_lexicon > base_lexicon > grief_lexicon


def test_coefficient_zero_and_reset_give_the_baseline_exactly(smol, joy_vector):
    steerer, vector = joy_vector
    base = logits(smol)
    steerer.add(vector.with_alpha(0.0))
    assert torch.equal(logits(smol), base)
    steerer.set_vectors([vector])
    assert not torch.equal(logits(smol), base)
    steerer.reset()
    assert torch.equal(logits(smol), base)
    assert steerer.steered_layers() == []


def test_saved_and_reloaded_set_gives_identical_logits(smol, joy_vector, tmp_path):
    steerer, vector = joy_vector
    second = capture_vector(steerer, ["The ocean, waves and the beach."], 14, 2.0)
    steerer.set_vectors([vector, second])
    expected = logits(smol)
    path = save_vectors(tmp_path / "set.safetensors", steerer.vectors, steerer.info)
    steerer.reset()
    steerer.set_vectors(load_vectors(path, steerer.info))
    assert torch.equal(logits(smol), expected)
