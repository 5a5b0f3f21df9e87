"""Exact effects of steering on a tiny random Llama (and GPT-2)."""

from __future__ import annotations

import llm_steer
import pytest
import torch

from steering import (
    IncompatibleVectorError,
    InvalidInputError,
    SteeringVector,
    UnsupportedModelError,
    VectorSource,
    capture_vector,
    steerer_for,
)
from steering.models import find_decoder_layers

IDS = torch.tensor([[1, 520, 3000, 77, 9001, 42, 7]])


def logits(model, ids=IDS):
    with torch.no_grad():
        return model(ids).logits


def hidden_states(model, ids=IDS):
    with torch.no_grad():
        return model(ids, output_hidden_states=True).hidden_states


def random_vector(layer, alpha=1.0, size=32, seed=0, prompt="concept"):
    generator = torch.Generator().manual_seed(seed)
    return SteeringVector(
        layer=layer,
        alpha=alpha,
        direction=torch.randn(size, generator=generator),
        source=VectorSource.from_prompts((prompt,)),
    )


def reference_logits(model, vectors, ids=IDS):
    """Logits with H + alpha * V added by plain forward pre-hooks (the reference)."""
    layers = find_decoder_layers(model)
    handles = []

    def make_hook(delta):
        def hook(module, args, kwargs):
            if "hidden_states" in kwargs:
                kwargs["hidden_states"] = kwargs["hidden_states"] + delta
            else:
                args = (args[0] + delta, *args[1:])
            return args, kwargs
        return hook

    for vector in vectors:
        delta = vector.alpha * vector.direction
        handles.append(
            layers[vector.layer].register_forward_pre_hook(make_hook(delta), with_kwargs=True)
        )
    try:
        return logits(model, ids)
    finally:
        for handle in handles:
            handle.remove()


def test_layers_below_are_untouched_and_output_matches_reference(tiny):
    steerer = steerer_for(tiny.model, tiny.tokenizer)
    base_hidden = hidden_states(tiny.model)
    vector = random_vector(layer=2, alpha=3.0)
    steerer.add(vector)
    steered_hidden = hidden_states(tiny.model)
    for i in range(3):  # embeddings and the outputs of layers 0 and 1 feed layer 2 unchanged
        assert torch.equal(steered_hidden[i], base_hidden[i])
    assert not torch.allclose(steered_hidden[3], base_hidden[3])
    torch.testing.assert_close(
        logits(tiny.model), reference_logits_unsteered(tiny, steerer, [vector]), rtol=0, atol=1e-6
    )


def reference_logits_unsteered(loaded, steerer, vectors):
    with steerer.unsteered():
        return reference_logits(loaded.model, vectors)


def test_several_vectors_on_same_and_different_layers_add_up(tiny):
    steerer = steerer_for(tiny.model, tiny.tokenizer)
    vectors = [
        random_vector(1, 2.0, seed=1),
        random_vector(1, -1.5, seed=2),
        random_vector(3, 0.7, seed=3),
    ]
    steerer.set_vectors(vectors)
    assert steerer.steered_layers() == [1, 3]
    torch.testing.assert_close(
        logits(tiny.model), reference_logits_unsteered(tiny, steerer, vectors), rtol=0, atol=1e-5
    )


def test_alpha_zero_is_the_unsteered_model(tiny):
    base = logits(tiny.model)
    steerer = steerer_for(tiny.model, tiny.tokenizer)
    steerer.add(random_vector(1, 0.0))
    assert torch.equal(logits(tiny.model), base)


def test_reset_restores_bit_identical_logits_and_removes_every_hook(tiny):
    base = logits(tiny.model)
    steerer = steerer_for(tiny.model, tiny.tokenizer)
    steerer.set_vectors([random_vector(0, 5.0), random_vector(2, -4.0, seed=1)])
    assert not torch.equal(logits(tiny.model), base)
    steerer.reset()
    assert torch.equal(logits(tiny.model), base)
    assert steerer.steered_layers() == []
    assert all("forward" not in vars(layer) for layer in steerer.layers)
    assert steerer.vectors == ()


def test_remove_one_vector(tiny):
    steerer = steerer_for(tiny.model, tiny.tokenizer)
    first, second = random_vector(1, 2.0, seed=1), random_vector(2, 2.0, seed=2)
    steerer.set_vectors([first, second])
    assert steerer.remove(first.id) is first
    assert steerer.vectors == (second,)
    torch.testing.assert_close(
        logits(tiny.model), reference_logits_unsteered(tiny, steerer, [second]), rtol=0, atol=1e-6
    )
    with pytest.raises(InvalidInputError, match="no active vector with id 'gone'"):
        steerer.remove("gone")
    assert steerer.vectors == (second,)


def test_incompatible_vector_changes_nothing(tiny):
    steerer = steerer_for(tiny.model, tiny.tokenizer)
    good = random_vector(1, 2.0)
    steerer.add(good)
    steered = logits(tiny.model)
    with pytest.raises(IncompatibleVectorError, match="hidden size 64"):
        steerer.add(random_vector(1, size=64))
    with pytest.raises(IncompatibleVectorError, match="layers 0 to 3"):
        steerer.set_vectors([good, random_vector(7)])
    assert steerer.vectors == (good,)
    assert torch.equal(logits(tiny.model), steered)


def test_applied_restores_previous_set_even_when_the_body_raises(tiny):
    steerer = steerer_for(tiny.model, tiny.tokenizer)
    user = random_vector(1, 2.0)
    steerer.add(user)
    before = logits(tiny.model)
    scope = steerer.applied([random_vector(3, 9.0, seed=5)])
    with pytest.raises(ZeroDivisionError), scope:  # noqa: PT012 - the body fails inside the scope
        assert steerer.steered_layers() == [3]
        raise ZeroDivisionError
    assert steerer.vectors == (user,)
    assert torch.equal(logits(tiny.model), before)
    with (
        steerer.applied([]),
        pytest.raises(RuntimeError, match="does not nest"),
        steerer.applied([]),
    ):
        pass
    assert steerer.vectors == (user,)


def test_one_steerer_per_model_and_no_shared_llm_steer_state(tiny, tiny_factory):
    other = tiny_factory(1)
    assert steerer_for(tiny.model, tiny.tokenizer) is steerer_for(tiny.model, tiny.tokenizer)
    a = steerer_for(tiny.model, tiny.tokenizer)
    b = steerer_for(other.model, other.tokenizer)
    base_b = logits(other.model)
    a.add(random_vector(1, 5.0))
    assert b.vectors == () and b.steered_layers() == []
    assert torch.equal(logits(other.model), base_b)
    assert llm_steer.Steer.steers == {}  # the class-level dict is never used


def test_reloaded_model_starts_unsteered(tiny, tiny_factory):
    steerer_for(tiny.model, tiny.tokenizer).add(random_vector(1, 5.0))
    reloaded = tiny_factory(0)  # same weights, new object
    assert steerer_for(reloaded.model, reloaded.tokenizer).vectors == ()
    with steerer_for(tiny.model, tiny.tokenizer).unsteered():
        assert torch.equal(logits(reloaded.model), logits(tiny.model))


def test_capture_is_the_mean_over_tokens_without_position_zero(tiny):
    steerer = steerer_for(tiny.model, tiny.tokenizer)
    prompts = ["the cat sat on the mat", "a dog ran in the park today"]
    vector = capture_vector(steerer, prompts, layer=2, alpha=1.0)
    expected = []
    for prompt in prompts:
        ids = [
            tiny.tokenizer.bos_token_id,
            *tiny.tokenizer.encode(prompt, add_special_tokens=False),
        ]
        expected.append(hidden_states(tiny.model, torch.tensor([ids]))[2][0, 1:].mean(dim=0))
    torch.testing.assert_close(
        vector.direction, torch.stack(expected).mean(dim=0), rtol=0, atol=1e-6
    )


def test_capture_with_contrast_is_the_difference_of_means(tiny):
    steerer = steerer_for(tiny.model, tiny.tokenizer)
    pos = capture_vector(steerer, ["I love this"], 1, 1.0)
    neg = capture_vector(steerer, ["I hate that"], 1, 1.0)
    diff = capture_vector(steerer, ["I love this"], 1, 2.0, ["I hate that"])
    torch.testing.assert_close(diff.direction, pos.direction - neg.direction, rtol=0, atol=1e-6)
    assert diff.contrast_prompts == ("I hate that",) and diff.alpha == 2.0


def test_capture_ignores_active_steering_and_leaves_it_in_place(tiny):
    steerer = steerer_for(tiny.model, tiny.tokenizer)
    clean = capture_vector(steerer, ["hello there"], 3, 1.0)
    active = random_vector(0, 8.0)
    steerer.add(active)
    steered = logits(tiny.model)
    steerer.activations.clear()  # capture again for real, not from the session's cache
    again = capture_vector(steerer, ["hello there"], 3, 1.0)
    assert torch.equal(again.direction, clean.direction)
    assert steerer.vectors == (active,)
    assert torch.equal(logits(tiny.model), steered)


@pytest.mark.parametrize(
    ("prompts", "layer", "alpha", "message"),
    [
        ([], 1, 1.0, "at least one concept prompt"),
        (["   ", ""], 1, 1.0, "at least one concept prompt"),
        (["hello"], 4, 1.0, "Layer 4 is out of range"),
        (["hello"], -1, 1.0, "out of range"),
        (["hello"], 1.5, 1.0, "whole number"),
        (["hello"], 1, float("nan"), "finite number"),
        (["hello"], 1, float("inf"), "finite number"),
        (["hello"], 1, 1e6, "between -100 and 100"),
        (["hello"], 1, "abc", "must be a number"),
        (["word " * 200], 1, 1.0, "longer than the model's context of 128"),
    ],
)
def test_bad_capture_input_is_refused_and_changes_nothing(tiny, prompts, layer, alpha, message):
    steerer = steerer_for(tiny.model, tiny.tokenizer)
    steerer.add(random_vector(1))
    before = logits(tiny.model)
    with pytest.raises(InvalidInputError, match=message):
        capture_vector(steerer, prompts, layer, alpha)
    assert len(steerer.vectors) == 1 and steerer.steered_layers() == [1]
    assert torch.equal(logits(tiny.model), before)


def test_vector_validates_itself():
    with pytest.raises(InvalidInputError, match="finite"):
        SteeringVector(1, 1.0, torch.tensor([1.0, float("nan")]), VectorSource.from_prompts(("x",)))
    with pytest.raises(InvalidInputError, match="1-D"):
        SteeringVector(1, 1.0, torch.zeros(2, 2), VectorSource.from_prompts(("x",)))
    with pytest.raises(InvalidInputError, match="concept prompt"):
        SteeringVector(1, 1.0, torch.zeros(2), VectorSource.from_prompts(()))


def test_gpt2_layers_steer_without_touching_the_state_dict(tiny_gpt2, tmp_path):
    model = tiny_gpt2.model
    keys = list(model.state_dict())
    base = logits(model)
    steerer = steerer_for(model, tiny_gpt2.tokenizer)
    vector = capture_vector(steerer, ["the sun is warm"], 1, 2.0, ["the ice is cold"])
    steerer.add(vector)
    steered = logits(model)
    assert not torch.equal(steered, base)
    torch.testing.assert_close(steered, reference_logits_unsteered(tiny_gpt2, steerer, [vector]),
                               rtol=0, atol=1e-5)
    assert list(model.state_dict()) == keys
    model.save_pretrained(tmp_path)
    from transformers import GPT2LMHeadModel

    assert list(GPT2LMHeadModel.from_pretrained(tmp_path).state_dict()) == keys
    steerer.reset()
    assert torch.equal(logits(model), base)


def test_unsupported_models_get_a_clear_message(tokenizer):
    with pytest.raises(UnsupportedModelError, match=r"LlamaServer.*not a PyTorch model"):
        steerer_for(type("LlamaServer", (), {})(), tokenizer)

    class Odd(torch.nn.Module):
        config = type("Config", (), {"model_type": "oddformer"})()

    with pytest.raises(UnsupportedModelError, match=r"Odd.*'oddformer'.*Supported layouts"):
        steerer_for(Odd(), tokenizer)


ROWS = torch.tensor(
    [[1, 520, 3000, 77, 9001, 42, 7], [1, 88, 12, 4000, 5, 6, 900], [1, 7, 7, 7, 300, 2, 11]]
)


def test_each_row_of_a_batch_gets_its_own_setting(tiny):
    steerer = steerer_for(tiny.model, tiny.tokenizer)
    active = random_vector(2, 9.0, seed=9)
    steerer.add(active)
    settings = [
        [random_vector(1, 2.0, seed=1), random_vector(3, -1.5, seed=2)],
        [],  # unsteered row
        [
            random_vector(1, -4.0, seed=3),
            random_vector(1, 0.5, seed=4),
            random_vector(2, 1.0, seed=5),
        ],
    ]
    with steerer.applied_rows(settings):
        batched = logits(tiny.model, ROWS)
    with steerer.unsteered():
        for row, vectors in enumerate(settings):
            expected = reference_logits(tiny.model, vectors, ROWS[row : row + 1])
            torch.testing.assert_close(batched[row : row + 1], expected, rtol=0, atol=1e-5)
    # Everything is back: the active vector steers again, no other layer is touched.
    assert steerer.vectors == (active,) and steerer.steered_layers() == [2]
    steerer.reset()
    assert all("forward" not in vars(layer) for layer in steerer.layers)


def test_bad_row_deltas_are_refused_and_change_nothing(tiny):
    steerer = steerer_for(tiny.model, tiny.tokenizer)
    steerer.add(random_vector(1))
    before = logits(tiny.model)
    for deltas, message in [
        ({1: torch.zeros(2, 3, 32)}, r"must be \[B, 1, 32\]"),
        ({1: torch.zeros(2, 1, 64)}, r"must be \[B, 1, 32\]"),
        ({9: torch.zeros(2, 1, 32)}, "Layer 9 is out of range"),
        ({1: torch.full((2, 1, 32), float("nan"))}, "not finite"),
    ]:
        with pytest.raises(InvalidInputError, match=message), steerer.applied_deltas(deltas):
            pass
    assert steerer.steered_layers() == [1] and torch.equal(logits(tiny.model), before)
