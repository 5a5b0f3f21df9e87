"""The KL guard: exactly 0 unsteered or at alpha 0, growing with alpha, equal
to a plain per-sentence reference, the same in any batching, through the layer
cache or a plain forward; and the shipped neutral text set."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from optimize.guard import kl as guard_module
from optimize.guard.kl import KlGuard
from optimize.scoring import prefix
from steering import capture_vector, steerer_for
from steering.errors import InvalidInputError
from steering.neutral import neutral_sentences

TEXTS = neutral_sentences()[:12]


def _steerer(loaded):
    steerer = steerer_for(loaded.model, loaded.tokenizer, loaded.name)
    steerer.reset()
    return steerer


def _concept(steerer, layer, alpha):
    return capture_vector(steerer, ["I love this day", "so happy"], layer, alpha, ["I hate it"])


def _reference_kl(steerer, texts, vectors):
    """Plain oracle: one sentence at a time, full log-softmax of the whole
    model's logits, KL summed over positions 1.. and averaged over them."""
    total, count = 0.0, 0
    tok = steerer.tokenizer
    for text in texts:
        ids = torch.tensor([[tok.bos_token_id, *tok.encode(text, add_special_tokens=False)]])
        with torch.no_grad(), steerer.unsteered():
            p = F.log_softmax(steerer.model(input_ids=ids).logits[0, 1:].double(), -1)
        with torch.no_grad(), steerer.applied(vectors):
            q = F.log_softmax(steerer.model(input_ids=ids).logits[0, 1:].double(), -1)
        total += float((p.exp() * (p - q)).sum())
        count += ids.shape[1] - 1
    return total / count


def test_shipped_neutral_set_is_a_few_hundred_distinct_sentences():
    sentences = neutral_sentences()
    assert len(sentences) >= 300
    assert len(set(sentences)) == len(sentences)
    assert all(len(s.split()) <= 20 for s in sentences)
    subset = neutral_sentences(count=100)
    assert len(set(subset)) == 100 and set(subset) <= set(sentences)
    assert subset[0] == sentences[0] and sentences.index(subset[-1]) > 290  # spread evenly


def test_kl_is_exactly_zero_unsteered_and_at_alpha_zero_and_grows_with_alpha(tiny):
    steerer = _steerer(tiny)
    guard = KlGuard(steerer, TEXTS)
    assert guard.positions == sum(
        len(tiny.tokenizer.encode(t, add_special_tokens=False)) for t in TEXTS
    )
    assert guard.evaluate(()).kl == 0.0
    assert guard.evaluate([_concept(steerer, 1, 0.0)]).kl == 0.0
    kls = [guard.evaluate([_concept(steerer, 1, alpha)]).kl for alpha in (0.5, 1, 2, 4)]
    assert all(a < b for a, b in itertools.pairwise(kls))
    assert kls[0] > 0
    assert steerer.vectors == () and steerer.steered_layers() == []


def test_kl_equals_a_plain_per_sentence_reference(tiny):
    steerer = _steerer(tiny)
    guard = KlGuard(steerer, TEXTS)
    n = steerer.info.num_layers
    for vectors in (
        [_concept(steerer, 0, 3.0)],
        [_concept(steerer, n - 1, -5.0)],
        [_concept(steerer, 1, 2.0), _concept(steerer, 2, -2.0)],
    ):
        got = guard.evaluate(vectors).kl
        assert got == pytest.approx(_reference_kl(steerer, TEXTS, vectors), abs=1e-5)


@pytest.mark.parametrize("plain_forward", [False, True])
def test_per_sentence_kl_gives_any_subset_mean(tiny, monkeypatch, plain_forward):
    """Each sentence's KL equals the plain oracle on that sentence alone, in
    the order of the texts, and a subset's mean is what a guard built on the
    subset measures: how the neutral set's size is measured in one pass."""
    if plain_forward:
        monkeypatch.setattr(guard_module, "layout_unsupported", lambda model, layers: "test")
    steerer = _steerer(tiny)
    guard = KlGuard(steerer, TEXTS, batch_size=3)
    assert (guard._cache is None) == plain_forward
    settings = [[_concept(steerer, 1, 3.0)], [], [_concept(steerer, 2, -4.0)]]
    totals = guard.sentence_kls_many(settings)
    positions = guard.sentence_positions
    assert positions.tolist() == [
        len(tiny.tokenizer.encode(t, add_special_tokens=False)) for t in TEXTS
    ]
    assert totals[1].tolist() == [0.0] * len(TEXTS)
    for vectors, total in zip(settings, totals, strict=True):
        assert float(total.sum() / positions.sum()) == pytest.approx(
            guard.evaluate(vectors).kl, abs=1e-6
        )
    vectors = settings[2]
    for i in (0, 5, 11):
        assert float(totals[2][i] / positions[i]) == pytest.approx(
            _reference_kl(steerer, TEXTS[i : i + 1], vectors), abs=1e-5
        )
    subset = [1, 4, 7, 8]
    small = KlGuard(steerer, [TEXTS[i] for i in subset])
    assert float(totals[2][subset].sum() / positions[subset].sum()) == pytest.approx(
        small.evaluate(vectors).kl, abs=1e-6
    )


def test_batched_equals_unbatched_and_cached_equals_plain_forward(tiny, monkeypatch):
    monkeypatch.setattr(prefix, "MIN_BATCH_TOKENS", 0)
    steerer = _steerer(tiny)
    one = KlGuard(steerer, TEXTS, batch_size=1)
    many = KlGuard(steerer, TEXTS, batch_size=64)
    assert len(one._batches) == len(TEXTS) and len(many._batches) == 1
    monkeypatch.setattr(guard_module, "layout_unsupported", lambda model, layers: "test")
    plain = KlGuard(steerer, TEXTS, batch_size=5)
    assert plain._cache is None and one._cache is not None
    n = steerer.info.num_layers
    # high, low, high again: later passes start from the cached layers
    for vectors in ([_concept(steerer, n - 1, 4.0)], [_concept(steerer, 1, 2.0)]) * 2:
        kl = one.evaluate(vectors).kl
        assert many.evaluate(vectors).kl == pytest.approx(kl, abs=1e-5)
        assert plain.evaluate(vectors).kl == pytest.approx(kl, abs=1e-5)
    # reference pass: n layers; then n-1, 1, n-1, 1 start from the stored states
    assert one._cache.layer_runs == len(TEXTS) * (n + 1 + (n - 1) + 1 + (n - 1))


def test_reference_is_unsteered_and_active_vectors_are_kept(tiny):
    steerer = _steerer(tiny)
    active = _concept(steerer, 2, 6.0)
    steerer.set_vectors([active])
    guard = KlGuard(steerer, TEXTS)
    assert steerer.vectors == (active,)
    assert guard.evaluate([active.with_alpha(0.0)]).kl == 0.0
    assert guard.evaluate([active]).kl > 0
    assert steerer.vectors == (active,)


def test_other_layouts_use_a_plain_forward(tiny_gpt2):
    steerer = _steerer(tiny_gpt2)
    guard = KlGuard(steerer, TEXTS[:4])
    assert guard._cache is None
    assert guard.evaluate(()).kl == 0.0
    vectors = [_concept(steerer, 1, 3.0)]
    assert guard.evaluate(vectors).kl == pytest.approx(
        _reference_kl(steerer, TEXTS[:4], vectors), abs=1e-5
    )


def test_bad_texts_are_refused(tiny, tmp_path):
    steerer = _steerer(tiny)
    with pytest.raises(InvalidInputError, match="too short"):
        KlGuard(steerer, ["ok", ""])
    with pytest.raises(InvalidInputError, match="batch size"):
        KlGuard(steerer, TEXTS, batch_size=0)
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(InvalidInputError, match="no sentences"):
        neutral_sentences(tmp_path / "empty.txt")
