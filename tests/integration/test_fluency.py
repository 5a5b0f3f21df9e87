"""The generation fluency check (steering/fluency.py): its repetition
measure and loop rule by hand, its mechanics on the tiny Llama (batched
replies equal one-by-one replies, vectors and hooks restored however
generation ends), and its behaviour on SmolLM2 with the sentiment preset's
vector."""

from __future__ import annotations

import pytest
import torch

from steering import InvalidInputError, capture_vector
from steering.fluency import (
    DEFAULT_FLUENCY_TOKENS,
    LOOP_FLOOR,
    LOOP_MARGIN,
    FluencyCheck,
    FluencyReference,
    ReplyFluency,
    check_fluency,
    check_fluency_many,
    fluency_prompts,
    fluency_reference,
    fluency_reference_and_checks,
    judge,
    repeated_4grams,
    setting_loops,
)
from steering.generate import GenerationSettings, batch_replies, reply

PROMPTS = ("Name a colour.", "Describe a chair.", "What is rain?")


def _vector(steerer, layer=1, alpha=4.0):
    return capture_vector(steerer, ["I love it", "Wonderful"], layer, alpha, ["I hate it", "Awful"])


# ------------------------------------------------------------ the measure and the rule


def test_repeated_4grams_counts_4_word_sequences_seen_before():
    assert repeated_4grams("") == 0.0
    assert repeated_4grams("one two three") == 0.0  # no 4-gram at all
    assert repeated_4grams("a b c d e f") == 0.0
    # 8 words, 5 grams: the last "a b c d" repeats the first
    assert repeated_4grams("a b c d x a b c d") == pytest.approx(1 / 6)
    # case and spacing do not matter; punctuation is part of a word
    assert repeated_4grams("A b C d\n a B c D") == pytest.approx(1 / 5)
    loop = "I am so happy to have you here. " * 6
    assert repeated_4grams(loop) > 0.8


def test_the_loop_rule_needs_the_floor_and_the_margin():
    assert setting_loops(LOOP_FLOOR + LOOP_MARGIN, 0.0)
    assert setting_loops(max(LOOP_FLOOR, LOOP_MARGIN), 0.0)
    assert not setting_loops(LOOP_FLOOR - 0.01, 0.0)  # below the floor
    assert not setting_loops(0.6, 0.6 - LOOP_MARGIN + 0.01)  # unsteered repeats as much
    assert setting_loops(0.6, 0.6 - LOOP_MARGIN - 0.01)


def _reference(texts, prompts=("p1", "p2")):
    return FluencyReference(
        "m", prompts, 32, tuple(texts), tuple(repeated_4grams(t) for t in texts)
    )


LOOP = "so happy to see you " * 8


def test_judge_compares_the_mean_share_with_the_unsteered_mean_and_says_why():
    reference = _reference(["one two three four five six seven", "a b c d e f g h"])
    fluent = judge(["one two three four five six", "a b c d e f g"], reference)
    assert not fluent.loops and fluent.share == 0.0 and fluent.reference_share == 0.0
    assert fluent.reason == (
        "Steered replies do not loop: 0% of their 4-word sequences repeat, against 0% unsteered."
    )
    looping = judge([LOOP, LOOP], reference)
    share = repeated_4grams(LOOP)
    assert looping.loops and looping.share == pytest.approx(share) and share > 0.8
    assert [(r.prompt, r.text, r.share, r.reference_share) for r in looping.replies] == [
        ("p1", LOOP, share, 0.0), ("p2", LOOP, share, 0.0)
    ]
    assert looping.reason == (
        f"Steered replies repeat themselves: {share:.0%} of their 4-word sequences repeat, "
        "against 0% unsteered."
    )


def test_the_unsteered_model_looping_as_much_does_not_count():
    # one reply of two loops: a mean of share / 2
    half = judge(["one two three four five", LOOP], _reference(["x y z w v", "a b c d e"]))
    assert half.loops == setting_loops(repeated_4grams(LOOP) / 2, 0.0)
    # the unsteered model loops on the same prompt: nothing above its mean
    same = judge(["one two three four five", LOOP], _reference(["one two three four five", LOOP]))
    assert not same.loops and same.share == same.reference_share


def test_results_are_validated():
    with pytest.raises(InvalidInputError, match=r"share between 0 and 1, got 1\.5"):
        ReplyFluency("p", "t", 1.5, 0.0)
    with pytest.raises(InvalidInputError, match="one reply and one share per prompt"):
        FluencyReference("m", ("p",), 8, ("a", "b"), (0.0, 0.0))
    with pytest.raises(InvalidInputError, match="at least one prompt"):
        FluencyReference("m", (), 8, (), ())
    with pytest.raises(InvalidInputError, match="Max new tokens"):
        FluencyReference("m", ("p",), 0, ("a",), (0.0,))
    with pytest.raises(InvalidInputError, match="does not loop by the rule, not loops=True"):
        FluencyCheck((ReplyFluency("p", "t", 0.0, 0.0),), 0.0, 0.0, True, "r")
    with pytest.raises(InvalidInputError, match="one reply per prompt: 2 prompts, 1 replies"):
        judge(["x"], _reference(["a", "b"]))


def test_the_shipped_prompts(tmp_path):
    prompts = fluency_prompts()
    assert len(prompts) == 12 and all(p.endswith(("?", ".")) for p in prompts)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n \n")
    with pytest.raises(InvalidInputError, match="has no prompts"):
        fluency_prompts(empty)
    with pytest.raises(InvalidInputError, match="Cannot read the fluency prompts file"):
        fluency_prompts(tmp_path / "missing.txt")


# ------------------------------------------------------------ mechanics, tiny Llama


def test_batched_replies_equal_replies_one_by_one(tiny):
    settings = GenerationSettings(max_new_tokens=12)
    conversations = [[{"role": "user", "content": p}] for p in PROMPTS]
    batched = batch_replies(tiny.model, tiny.tokenizer, conversations, settings)
    alone = tuple(reply(tiny.model, tiny.tokenizer, c, settings) for c in conversations)
    assert batched == alone
    with pytest.raises(InvalidInputError, match="no conversations"):
        batch_replies(tiny.model, tiny.tokenizer, [], settings)
    with pytest.raises(InvalidInputError, match="last message with text"):
        batch_replies(tiny.model, tiny.tokenizer, [[{"role": "user", "content": " "}]], settings)


def test_check_uses_exactly_the_vectors_and_restores_the_active_set(tiny_steerer, tiny):
    active = _vector(tiny_steerer, layer=2, alpha=1.0)
    tiny_steerer.set_vectors([active])
    trial = _vector(tiny_steerer, layer=1, alpha=8.0)
    reference = fluency_reference(tiny_steerer, prompts=PROMPTS, max_new_tokens=10)
    assert tiny_steerer.vectors == (active,) and tiny_steerer.steered_layers() == [2]
    settings = GenerationSettings(max_new_tokens=10)
    conversations = [[{"role": "user", "content": p}] for p in PROMPTS]
    with tiny_steerer.unsteered():
        assert reference.texts == batch_replies(tiny.model, tiny.tokenizer, conversations, settings)
    check = check_fluency(tiny_steerer, [trial], reference=reference)
    with tiny_steerer.applied([trial]):
        expected = batch_replies(tiny.model, tiny.tokenizer, conversations, settings)
    assert tuple(r.text for r in check.replies) == expected != reference.texts
    assert [r.prompt for r in check.replies] == list(PROMPTS)
    assert [r.reference_share for r in check.replies] == list(reference.shares)
    assert tiny_steerer.vectors == (active,) and tiny_steerer.steered_layers() == [2]
    # no vectors: the unsteered replies themselves
    same = check_fluency(tiny_steerer, [], reference=reference)
    assert tuple(r.text for r in same.replies) == reference.texts and not same.loops


def test_many_settings_in_one_generation_equal_one_at_a_time(tiny_steerer):
    reference = fluency_reference(tiny_steerer, prompts=PROMPTS, max_new_tokens=10)
    low, high = _vector(tiny_steerer, 1, 3.0), _vector(tiny_steerer, 2, -6.0)
    settings = [[low], [], [low, high], [high]]
    many = check_fluency_many(tiny_steerer, settings, reference=reference)
    one = [check_fluency(tiny_steerer, s, reference=reference) for s in settings]
    assert many == one
    assert tiny_steerer.vectors == () and tiny_steerer.steered_layers() == []


def test_the_reference_generated_with_the_first_settings_equals_one_made_alone(tiny_steerer):
    active = _vector(tiny_steerer, layer=2, alpha=1.0)
    tiny_steerer.set_vectors([active])
    low, high = _vector(tiny_steerer, 1, 3.0), _vector(tiny_steerer, 2, -6.0)
    together, checks = fluency_reference_and_checks(
        tiny_steerer, [[low], [high]], prompts=PROMPTS, max_new_tokens=10
    )
    alone = fluency_reference(tiny_steerer, prompts=PROMPTS, max_new_tokens=10)
    assert together == alone  # unsteered: the active vector is off for it too
    assert checks == check_fluency_many(tiny_steerer, [[low], [high]], reference=alone)
    assert tiny_steerer.vectors == (active,) and tiny_steerer.steered_layers() == [2]


def test_vectors_are_restored_when_generation_raises(tiny_steerer, tiny, monkeypatch):
    active = _vector(tiny_steerer, layer=2, alpha=1.0)
    tiny_steerer.set_vectors([active])
    reference = fluency_reference(tiny_steerer, prompts=PROMPTS, max_new_tokens=4)
    seen = []

    def broken(*args, **kwargs):
        seen.append(tiny_steerer.steered_layers())
        raise RuntimeError("out of memory")

    monkeypatch.setattr(tiny.model, "generate", broken)
    trial = _vector(tiny_steerer, layer=0, alpha=5.0)
    with pytest.raises(RuntimeError, match="out of memory"):
        check_fluency(tiny_steerer, [trial], reference=reference)
    with pytest.raises(RuntimeError, match="out of memory"):
        check_fluency_many(tiny_steerer, [[trial]], reference=reference)
    assert seen == [[0], [0]]  # the trial setting alone was steering while generating
    assert tiny_steerer.vectors == (active,) and tiny_steerer.steered_layers() == [2]
    assert tiny_steerer.user_vectors == (active,)


def test_a_reference_that_does_not_fit_is_refused(tiny_steerer, tiny_factory):
    from steering import steerer_for

    reference = fluency_reference(tiny_steerer, prompts=PROMPTS, max_new_tokens=4)
    with pytest.raises(InvalidInputError, match="have 4 new tokens, not 8"):
        check_fluency(tiny_steerer, [], reference=reference, max_new_tokens=8)
    with pytest.raises(InvalidInputError, match="prompts differ"):
        check_fluency(tiny_steerer, [], reference=reference, prompts=["Other?"])
    other = tiny_factory(1)
    other_steerer = steerer_for(other.model, other.tokenizer, other.name)
    with pytest.raises(InvalidInputError, match="are of tiny-llama, not of tiny-llama-1"):
        check_fluency(other_steerer, [], reference=reference)
    with pytest.raises(InvalidInputError, match="at least one prompt"):
        check_fluency(tiny_steerer, [], prompts=[])
    assert tiny_steerer.vectors == () and tiny_steerer.steered_layers() == []


def test_a_vector_of_another_size_is_refused_before_generating(tiny_steerer, tiny, monkeypatch):
    from steering import IncompatibleVectorError, SteeringVector, VectorSource

    reference = fluency_reference(tiny_steerer, prompts=PROMPTS, max_new_tokens=4)
    wrong = SteeringVector(1, 1.0, torch.ones(8), VectorSource.from_prompts(["p"]))
    monkeypatch.setattr(tiny.model, "generate", lambda *a, **k: pytest.fail("generated"))
    with pytest.raises(IncompatibleVectorError):
        check_fluency(tiny_steerer, [wrong], reference=reference)
    with pytest.raises(IncompatibleVectorError):
        check_fluency_many(tiny_steerer, [[wrong]], reference=reference)
    assert tiny_steerer.steered_layers() == []


def test_replies_past_the_context_are_refused_with_the_active_set_kept(tiny_steerer):
    active = _vector(tiny_steerer, layer=2, alpha=1.0)
    tiny_steerer.set_vectors([active])
    # the tiny Llama's context is 128 tokens: the default 128 new tokens do not fit
    with pytest.raises(InvalidInputError, match="exceeds the model's context of 128"):
        fluency_reference(tiny_steerer, prompts=PROMPTS[:1])
    reference = fluency_reference(tiny_steerer, prompts=PROMPTS, max_new_tokens=4)
    with pytest.raises(InvalidInputError, match="Max new tokens must be between 1 and"):
        check_fluency(tiny_steerer, [], prompts=PROMPTS, max_new_tokens=0)
    assert reference.max_new_tokens == 4
    assert tiny_steerer.vectors == (active,) and tiny_steerer.steered_layers() == [2]


# ------------------------------------------------------------ behaviour, SmolLM2


@pytest.mark.full
def test_smollm2_the_preset_vector_loops_when_strong_and_not_when_mild(smol):
    """The sentiment preset's vector (mean difference of its prompts) on the
    real model, at settings of the measured grid (docs/guard.md): at layer 3,
    strength 0.4 (KL about 0.9) the replies loop and are flagged; at strength
    0.1 (KL about 0.08) they are not; at layer 13, strength 0.3, inside the
    KL budget (about 0.40), they loop too, which the KL guard cannot see."""
    from presets import load_preset
    from steering import steerer_for

    preset = load_preset("sentiment")
    steerer = steerer_for(smol.model, smol.tokenizer, smol.name)
    low = capture_vector(steerer, preset.concept, 3, 1.0, preset.contrast)
    high = capture_vector(steerer, preset.concept, 13, 1.0, preset.contrast)
    steerer.set_vectors([low])  # an active vector the check must leave alone
    reference = fluency_reference(steerer)
    assert reference.max_new_tokens == DEFAULT_FLUENCY_TOKENS
    assert len(reference.texts) == len(fluency_prompts())
    # the unsteered model, not the active vector: replies as the chat gives them
    settings = GenerationSettings(max_new_tokens=DEFAULT_FLUENCY_TOKENS)
    conversation = [{"role": "user", "content": reference.prompts[0]}]
    with steerer.unsteered():
        assert reference.texts[0] == reply(smol.model, smol.tokenizer, conversation, settings)
    # SmolLM2 repeats itself a little on its own (measured 0.17), far from a loop
    assert 0.05 < reference.share < LOOP_FLOOR + LOOP_MARGIN

    strong = check_fluency(steerer, [low.with_strength(0.4)], reference=reference)
    assert strong.loops and strong.share > reference.share + 2 * LOOP_MARGIN
    assert strong.reason.startswith("Steered replies repeat themselves: ")
    mild, inside = check_fluency_many(
        steerer, [[low.with_strength(0.1)], [high.with_strength(0.3)]], reference=reference
    )
    assert not mild.loops and mild.reason.startswith("Steered replies do not loop: ")
    assert inside.loops
    assert steerer.vectors == (low,) and steerer.steered_layers() == [3]
