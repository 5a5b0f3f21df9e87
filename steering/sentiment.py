"""A sentiment measure from the model's own log-probabilities, so tests and
benchmarks can tell which way steering moved the model without anyone reading
its text."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

POSITIVE_WORDS = (
    " happy", " great", " wonderful", " good", " excited", " joyful", " grateful", " amazing"
)
NEGATIVE_WORDS = (
    " sad", " terrible", " awful", " bad", " miserable", " angry", " hopeless", " lonely"
)


def _first_tokens(tokenizer: Any, words: Sequence[str]) -> list[int]:
    return sorted({tokenizer.encode(word, add_special_tokens=False)[0] for word in words})


def next_word_sentiment(model: Any, tokenizer: Any, prompts: Sequence[str]) -> float:
    """Mean over prompts of log P(positive word next) - log P(negative word next)."""
    positive = _first_tokens(tokenizer, POSITIVE_WORDS)
    negative = _first_tokens(tokenizer, NEGATIVE_WORDS)
    scores = []
    with torch.no_grad():
        for prompt in prompts:
            ids = tokenizer(prompt, return_tensors="pt")["input_ids"].to(model.device)
            logp = torch.log_softmax(model(ids).logits[0, -1].float(), dim=-1)
            gap = torch.logsumexp(logp[positive], 0) - torch.logsumexp(logp[negative], 0)
            scores.append(float(gap))
    return sum(scores) / len(scores)
