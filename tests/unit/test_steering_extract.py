"""Extraction methods behind a registry, and every layer captured in one pass."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
import torch

from steering import (
    METHODS,
    InvalidInputError,
    VectorFileError,
    VectorSource,
    capture,
    capture_vector,
    load_vectors,
    recapture,
    save_vectors,
    steerer_for,
)
from steering.activations import capture_all_layers
from steering.extract.base import PROMPTS, Activations, only_keys, prompt_tuple

PROMPTS_5 = [
    "the cat sat on the mat",
    "a dog ran in the park today",
    "rain",
    "what a wonderful surprise this morning was for all of us",
    "I am so sad today.",
]


def reference_means(model, tokenizer, prompts, layer):
    """Today's per-layer capture, written plainly: one unbatched forward per
    prompt, the state entering `layer` (hidden_states[layer] of HF output),
    positions 1.. averaged per prompt, then averaged over prompts."""
    means = []
    for prompt in prompts:
        ids = [tokenizer.bos_token_id, *tokenizer.encode(prompt, add_special_tokens=False)]
        with torch.no_grad():
            hidden = model(torch.tensor([ids]), output_hidden_states=True).hidden_states
        means.append(hidden[layer][0, 1:].float().mean(dim=0))
    return torch.stack(means).mean(dim=0)


class CountForwards:
    """Counts the model's forward passes."""

    def __init__(self, model):
        self.calls = 0
        self.handle = model.register_forward_pre_hook(self)

    def __call__(self, module, args):
        self.calls += 1


@pytest.mark.parametrize("fixture", ["tiny", "tiny_gpt2"])
def test_one_pass_equals_the_per_layer_capture_at_every_layer(request, fixture):
    loaded = request.getfixturevalue(fixture)
    steerer = steerer_for(loaded.model, loaded.tokenizer)
    counter = CountForwards(loaded.model)
    activations = steerer.prompt_activations(PROMPTS_5)  # right-padded: lengths differ
    assert counter.calls == 1  # every layer from one batched forward (5 prompts, one chunk)
    counter.handle.remove()
    assert activations.shape == (5, steerer.info.num_layers, steerer.info.hidden_size)
    for layer in range(steerer.info.num_layers):
        expected = reference_means(loaded.model, loaded.tokenizer, PROMPTS_5, layer)
        torch.testing.assert_close(activations[:, layer].mean(dim=0), expected, rtol=0, atol=1e-5)


def test_chunks_give_the_same_numbers(tiny):
    steerer = steerer_for(tiny.model, tiny.tokenizer)
    tokens = [steerer._tokens(p) for p in PROMPTS_5]
    whole = capture_all_layers(tiny.model, steerer.layers, tokens, steerer.device, chunk=16)
    counter = CountForwards(tiny.model)
    chunked = capture_all_layers(tiny.model, steerer.layers, tokens, steerer.device, chunk=2)
    assert counter.calls == 3
    torch.testing.assert_close(chunked, whole, rtol=0, atol=1e-5)


def test_recapture_at_another_layer_runs_no_forward(tiny):
    steerer = steerer_for(tiny.model, tiny.tokenizer)
    vector = capture_vector(steerer, ["I love this"], 1, 2.0, ["I hate that"])
    counter = CountForwards(tiny.model)
    moved = recapture(steerer, vector, 3)
    assert counter.calls == 0
    assert (moved.id, moved.alpha, moved.source, moved.layer) == (vector.id, 2.0, vector.source, 3)
    expected = reference_means(tiny.model, tiny.tokenizer, ["I love this"], 3) - reference_means(
        tiny.model, tiny.tokenizer, ["I hate that"], 3
    )
    torch.testing.assert_close(moved.direction, expected, rtol=0, atol=1e-5)


def test_the_cache_is_bounded(tiny):
    steerer = steerer_for(tiny.model, tiny.tokenizer)
    steerer.activations.max_entries = 2
    for prompt in ("one two", "three four", "five six"):
        steerer.prompt_activations([prompt])
    assert len(steerer.activations) == 2
    assert steerer.activations.get(("one two",)) is None


def test_methods_are_chosen_from_the_inputs_and_unknown_names_are_refused():
    assert VectorSource.from_prompts(["a"]).method == "mean"
    assert VectorSource.from_prompts(["a"], ["b"]).method == "mean_diff"
    with pytest.raises(
        InvalidInputError,
        match=(
            "Unknown extraction method 'pca'; "
            "valid methods: gguf, mean, mean_diff, pca_diff, task_pairs"
        ),
    ):
        VectorSource("pca", {"prompts": ("a",)})
    with pytest.raises(InvalidInputError, match="does not take contrast_prompts"):
        VectorSource("mean", {"prompts": ("a",), "contrast_prompts": ("b",)})
    with pytest.raises(InvalidInputError, match="at least one contrast prompt"):
        VectorSource("mean_diff", {"prompts": ("a",)})
    source = VectorSource("mean_diff", {"prompts": [" a "], "contrast_prompts": ["b", "  "]})
    assert source.inputs == {"prompts": ("a",), "contrast_prompts": ("b",)}
    with pytest.raises(TypeError):
        source.inputs["prompts"] = ("changed",)  # read-only


class LastPrompt:
    """A toy method defined only here: the last prompt's activation, scaled.
    Registering it is all it takes to capture, recapture, save and load with it."""

    name = "toy_last"

    def check(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        only_keys(self.name, inputs, (PROMPTS, "scale"))
        scale = inputs.get("scale", 1.0)
        if not isinstance(scale, (int, float)):
            raise InvalidInputError("scale must be a number.")
        return {PROMPTS: prompt_tuple(inputs, PROMPTS, "Give a prompt."), "scale": float(scale)}

    def direction(
        self, activations: Activations, inputs: Mapping[str, Any], layer: int
    ) -> torch.Tensor:
        return inputs["scale"] * activations.prompt_activations(inputs[PROMPTS])[-1, layer]


@pytest.fixture
def toy(monkeypatch):
    method = LastPrompt()
    monkeypatch.setitem(METHODS, method.name, method)  # the one "registry line"
    return method


def test_a_toy_method_needs_no_other_file(tiny, toy, tmp_path):
    steerer = steerer_for(tiny.model, tiny.tokenizer, tiny.name)
    source = VectorSource(
        "toy_last", {"prompts": ["a first prompt", "the last prompt"], "scale": 3}
    )
    vector = capture(steerer, source, 1, 1.5)
    expected = 3 * reference_means(tiny.model, tiny.tokenizer, ["the last prompt"], 1)
    torch.testing.assert_close(vector.direction, expected, rtol=0, atol=1e-5)

    moved = recapture(steerer, vector, 2)  # re-runs the toy method, not a difference of means
    expected = 3 * reference_means(tiny.model, tiny.tokenizer, ["the last prompt"], 2)
    torch.testing.assert_close(moved.direction, expected, rtol=0, atol=1e-5)
    assert moved.method == "toy_last" and moved.id == vector.id

    path = save_vectors(tmp_path / "toy.safetensors", [moved], steerer.info)
    [loaded] = load_vectors(path, steerer.info)
    assert loaded.same_as(moved) and loaded.source.inputs["scale"] == 3.0 and loaded.id == moved.id


def test_a_file_of_an_unregistered_method_is_refused(tiny, toy, tmp_path, monkeypatch):
    steerer = steerer_for(tiny.model, tiny.tokenizer, tiny.name)
    vector = capture(steerer, VectorSource("toy_last", {"prompts": ["hello there"]}), 1, 1.0)
    path = save_vectors(tmp_path / "toy.safetensors", [vector], steerer.info)
    monkeypatch.delitem(METHODS, "toy_last")
    with pytest.raises(VectorFileError, match="Unknown extraction method 'toy_last'"):
        load_vectors(path, steerer.info)


def test_ids_are_stable_and_unique(tiny):
    steerer = steerer_for(tiny.model, tiny.tokenizer)
    first = capture_vector(steerer, ["I love this"], 1, 2.0)
    second = capture_vector(steerer, ["I love this"], 1, 2.0)
    assert first.id != second.id and len(first.id) == 12
    assert first.with_alpha(-1.0).id == first.id
    steerer.set_vectors([first, second])
    assert steerer.find(second.id) is second
    with pytest.raises(InvalidInputError, match="cannot share an id"):
        steerer.set_vectors([first, first.with_alpha(3.0)])
    assert steerer.vectors == (first, second)
