"""Estimates before a job starts (steering/budget.py), on the tiny Llama: what
each extraction method reads, only what is not captured yet, the model timed
on the tokens it really runs (padding included), and a prompt too long for
the caps refused by the estimate, before any model work."""

from __future__ import annotations

import pytest
import torch

from steering.activations import capture_all_layers, padded_tokens
from steering.budget import (
    NOTHING,
    Throughput,
    WorkEstimate,
    duration,
    estimate_map,
    estimate_moves,
    estimate_reads,
    reads_of,
)
from steering.capture import capture
from steering.errors import InvalidInputError
from steering.extract import VectorSource

CONCEPT = ("I love this, it is wonderful", "What a happy bright day")
CONTRAST = ("I hate this, it is awful", "What a sad grey day")
ITEMS = [
    ["Is this happy? Great.", " yes", [" no", " maybe"]],
    ["Is this sad? Awful.", " yes", [" no"]],
]


def test_reads_of_finds_what_each_method_reads():
    mean = VectorSource("mean", {"prompts": CONCEPT})
    diff = VectorSource("mean_diff", {"prompts": CONCEPT, "contrast_prompts": CONTRAST})
    pca = VectorSource("pca_diff", {"prompts": CONCEPT, "contrast_prompts": CONTRAST})
    task = VectorSource("task_pairs", {"task": "t", "split": "training", "items": ITEMS})
    gguf = VectorSource("gguf", {"file": "x.gguf", "tensor": "direction.3"})
    assert reads_of(mean, 4, 32).prompt_lists == (CONCEPT,)
    assert reads_of(diff, 4, 32).prompt_lists == (CONCEPT, CONTRAST)
    # PCA of zeros is refused, and what it read is recorded anyway
    assert reads_of(pca, 4, 32).prompt_lists == (CONCEPT, CONTRAST)
    (pairs,) = reads_of(task, 4, 32).pair_lists
    assert len(pairs) == 5 and pairs[0] == ("Is this happy? Great.", " yes")
    assert reads_of(gguf, 4, 32) == reads_of(gguf, 4, 32).__class__()  # a stored direction


def test_an_estimate_counts_only_what_is_not_captured_yet(tiny_steerer):
    diff = VectorSource("mean_diff", {"prompts": CONCEPT, "contrast_prompts": CONTRAST})
    first = estimate_reads(tiny_steerer, [diff])
    tokens = sum(len(t) for t in tiny_steerer.prompt_tokens([*CONCEPT, *CONTRAST]))
    assert first.what == f"reads 4 prompts ({tokens} tokens)" and first.seconds > 0
    assert tiny_steerer.throughput.token_seconds is not None  # measured by the calibration
    vector = capture(tiny_steerer, diff, 1, 1.0)
    assert estimate_reads(tiny_steerer, [diff]) is NOTHING  # kept for the session: free now
    assert estimate_moves(tiny_steerer, [(vector, 1), (vector, 3)]) is NOTHING
    task = VectorSource("task_pairs", {"task": "t", "split": "training", "items": ITEMS})
    assert estimate_reads(tiny_steerer, [task]).what.startswith("reads 5 answers (")
    cells = estimate_map(tiny_steerer, vector, (1, 2), (0.5, 1.0, 2.0), ("A plain sentence.",))
    assert cells.what == "scores 6 cells on 5 texts" and cells.seconds > 0


def test_the_model_is_timed_on_the_tokens_it_runs(tiny_steerer):
    texts = [f"sentence {'word ' * n}" for n in (1, 3, 40, 2, 5)]
    token_lists = tiny_steerer.prompt_tokens(texts)
    speed = Throughput()
    capture_all_layers(
        tiny_steerer.model, tiny_steerer.layers, token_lists, tiny_steerer.device, chunk=2,
        speed=speed,
    )
    # sorted by length (4, 5 | 6, 8 | 43), two at a time, each padded to a multiple of 32
    lengths = [len(t) for t in token_lists]
    assert speed._tokens == padded_tokens(lengths, chunk=2) == 2 * 32 + 2 * 32 + 1 * 64
    assert speed.token_seconds is not None and speed.token_seconds > 0


def test_an_estimate_refuses_a_prompt_past_the_caps_before_any_work(tiny_steerer):
    long_source = VectorSource("mean", {"prompts": (" ".join(["word"] * 600),)})
    runs = []
    handle = tiny_steerer.layers[0].register_forward_pre_hook(lambda *_: runs.append(1))
    try:
        with pytest.raises(InvalidInputError, match="A prompt is 601 tokens long"):
            estimate_reads(tiny_steerer, [long_source])
    finally:
        handle.remove()
    assert runs == []


def test_estimates_read_as_people_count_time():
    assert [duration(s) for s in (0.2, 45, 600, 3 * 3600)] == ["1 s", "45 s", "10 min", "3.0 h"]
    both = WorkEstimate(60.0, "reads 2 prompts (9 tokens)") + WorkEstimate(20.0, "writes 1 reply")
    assert both.describe() == "reads 2 prompts (9 tokens); writes 1 reply: about 80 s"
    assert torch.isfinite(torch.tensor(both.seconds))
