"""A capture is bounded, reports progress and can be
cancelled, and its batches come in a few padded sizes (memory stays flat)."""

from __future__ import annotations

import dataclasses
import threading

import pytest
import torch

from steering import InvalidInputError, capture_vector
from steering.activations import CaptureCancelled, capture_all_layers, padded_width
from steering.limits import MAX_PROMPTS_PER_CAPTURE, MAX_TOKENS_PER_PROMPT, PAD_BUCKET


@pytest.fixture
def steerer(tiny_steerer):
    return tiny_steerer


def test_too_many_prompts_are_refused_with_the_cap_named(steerer, monkeypatch):
    prompts = [f"prompt {i}" for i in range(MAX_PROMPTS_PER_CAPTURE + 1)]
    with pytest.raises(InvalidInputError, match=f"at most {MAX_PROMPTS_PER_CAPTURE:,} prompts; got "
                       f"{MAX_PROMPTS_PER_CAPTURE + 1:,}"):
        capture_vector(steerer, prompts, 1, 1.0)
    with pytest.raises(
        InvalidInputError, match=f"at most {MAX_PROMPTS_PER_CAPTURE:,} contrast prompts"
    ):
        capture_vector(steerer, ["good"], 1, 1.0, prompts)
    assert steerer.vectors == () and len(steerer.activations) == 0


def test_a_prompt_over_the_token_cap_is_refused(steerer, monkeypatch):
    long = "word " * (MAX_TOKENS_PER_PROMPT + 10)
    # the tiny model's context (128) is the smaller bound; with a larger one the cap speaks
    monkeypatch.setattr(steerer, "info", dataclasses.replace(steerer.info, max_context=10**6))
    with pytest.raises(InvalidInputError, match=f"at most {MAX_TOKENS_PER_PROMPT} tokens"):
        capture_vector(steerer, ["short one", long], 1, 1.0)
    assert steerer.vectors == ()


def test_progress_counts_every_prompt_list_and_cancel_stops_it(steerer):
    seen = []
    concept = [f"happy thought number {i}" for i in range(20)]
    contrast = [f"sad thought number {i}" for i in range(5)]
    capture_vector(steerer, concept, 1, 1.0, contrast, on_progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (25, 25)
    assert all(t == 25 for _, t in seen) and [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert (16, 25) in seen  # after the first batch of 16 concept prompts

    cancel = threading.Event()
    stopped = []

    def stop_after_first(done, total):
        stopped.append(done)
        cancel.set()

    others = [f"another prompt {i}" for i in range(40)]
    with pytest.raises(CaptureCancelled, match="cancelled after 16 of 40 prompts"):
        capture_vector(steerer, others, 1, 1.0, on_progress=stop_after_first, cancel=cancel)
    assert stopped == [16]
    assert steerer.activations.get(tuple(others)) is None and steerer.vectors == ()


def test_batches_are_padded_to_a_few_sizes_with_the_same_numbers(tiny, steerer):
    assert [padded_width(n, None) for n in (2, 31, 32, 33)] == [
        PAD_BUCKET,
        PAD_BUCKET,
        PAD_BUCKET,
        2 * PAD_BUCKET,
    ]
    assert padded_width(100, 110) == 110 and padded_width(120, 110) == 120
    widths = []
    hook = tiny.model.model.embed_tokens.register_forward_hook(
        lambda m, a, o: widths.append(a[0].shape[1])
    )
    try:
        tokens = [[1] + [500 + j for j in range(n)] for n in range(1, 60, 3)]
        padded = capture_all_layers(tiny.model, steerer.layers, tokens, steerer.device, chunk=4)
    finally:
        hook.remove()
    assert set(widths) <= {32, 64}
    one_each = torch.stack([
        capture_all_layers(tiny.model, steerer.layers, [t], steerer.device, max_width=len(t))[0]
        for t in tokens
    ])
    torch.testing.assert_close(padded, one_each, rtol=0, atol=1e-5)
