"""The layer x strength map on the tiny Llama: every batched cell equals a
separate steered evaluation through the Steerer, and bad grids are refused."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from steering import capture_vector, steerer_for
from steering.errors import InvalidInputError
from steering.explore_map import (
    MapGrid,
    StrengthMap,
    apply_cell,
    cell_vector,
    default_layers,
)

CONCEPT = ["I love this, it is wonderful", "What a happy bright day"]
CONTRAST = ["I hate this, it is awful", "What a sad grey day"]
NEUTRAL = [
    "The train leaves at nine.",
    "She put the cups on the shelf.",
    "Water boils at one hundred degrees.",
]


def _ids(steerer, text):
    bos = steerer.tokenizer.bos_token_id
    return torch.tensor([[bos, *steerer.tokenizer.encode(text, add_special_tokens=False)]])


def _logprobs(model, ids):
    with torch.no_grad():
        return F.log_softmax(model(ids).logits[0].double(), dim=-1)


def _mean_ll(model, ids):
    return float(_logprobs(model, ids)[:-1].gather(1, ids[0, 1:, None]).mean())


def reference_cell(steerer, vector):
    """Gain and KL of one setting, one text at a time, through Steerer.applied."""
    model = steerer.model
    texts = [*CONCEPT, *CONTRAST]

    def gap():
        lls = [_mean_ll(model, _ids(steerer, t)) for t in texts]
        return sum(lls[:2]) / 2 - sum(lls[2:]) / 2

    with steerer.unsteered():
        base_gap = gap()
        base = [_logprobs(model, _ids(steerer, t)) for t in NEUTRAL]
    with steerer.applied([vector]):
        steered_gap = gap()
        steered = [_logprobs(model, _ids(steerer, t)) for t in NEUTRAL]
    kl_sum = sum(
        float((p.exp() * (p - q)).sum(-1)[1:].sum()) for p, q in zip(base, steered, strict=True)
    )
    positions = sum(p.shape[0] - 1 for p in base)
    return steered_gap - base_gap, kl_sum / positions


def test_map_cells_equal_separate_steered_evaluations(tiny):
    steerer = steerer_for(tiny.model, tiny.tokenizer, tiny.name)
    steerer.reset()
    vector = capture_vector(steerer, CONCEPT, 1, 1.0, CONTRAST)
    steerer.add(vector)
    before = steerer.vectors
    scorer = StrengthMap(steerer, CONCEPT, CONTRAST, NEUTRAL)
    grid = MapGrid(layers=(1, 3), strengths=(0.5, -1.0, 2.0))
    rows = list(scorer.rows(grid, lambda layer: vector.source.direction(steerer, layer)))
    assert [[c.layer for c in row] for row in rows] == [[1, 1, 1], [3, 3, 3]]
    for row in rows:
        for cell in row:
            moved = cell_vector(steerer, vector, cell)
            assert moved.layer == cell.layer and moved.id == vector.id
            # the strength unit: |alpha * V| is strength x the layer's mean activation norm
            assert abs(moved.alpha) * moved.norm == pytest.approx(
                abs(cell.strength) * scorer.layer_norms[cell.layer], rel=1e-5
            )
            gain, kl = reference_cell(steerer, moved)
            assert cell.gain == pytest.approx(gain, abs=1e-5)
            assert cell.kl == pytest.approx(kl, abs=1e-5)
            assert cell.kl > 0
    assert steerer.vectors == before  # the map changes no active vector
    assert steerer.steered_layers() == [1]


def test_alpha_zero_row_is_exactly_unsteered(tiny):
    steerer = steerer_for(tiny.model, tiny.tokenizer, tiny.name)
    steerer.reset()
    vector = capture_vector(steerer, CONCEPT, 2, 1.0, CONTRAST)
    scorer = StrengthMap(steerer, CONCEPT, CONTRAST, NEUTRAL)
    (cell,) = scorer.row(2, vector.direction, [0.0])
    assert cell.gain == pytest.approx(0.0, abs=1e-9) and cell.kl == pytest.approx(0.0, abs=1e-9)


def test_cancel_stops_between_rows(tiny):
    steerer = steerer_for(tiny.model, tiny.tokenizer, tiny.name)
    steerer.reset()
    vector = capture_vector(steerer, CONCEPT, 2, 1.0, CONTRAST)
    scorer = StrengthMap(steerer, CONCEPT, CONTRAST, NEUTRAL)
    seen = []
    rows = scorer.rows(
        MapGrid((0, 1, 2, 3), (1.0,)), lambda layer: vector.direction, lambda: len(seen) >= 2
    )
    for row in rows:
        seen.append(row)  # noqa: PERF402 - the stop condition reads `seen` while rows are made
    assert len(seen) == 2


def test_apply_cell_changes_only_that_vector(tiny):
    steerer = steerer_for(tiny.model, tiny.tokenizer, tiny.name)
    steerer.reset()
    first = capture_vector(steerer, CONCEPT, 1, 1.0, CONTRAST)
    second = capture_vector(steerer, ["a cat"], 2, 0.5)
    steerer.set_vectors([first, second])
    scorer = StrengthMap(steerer, CONCEPT, CONTRAST, NEUTRAL)
    (cell,) = scorer.row(3, first.source.direction(steerer, 3), [0.5])
    moved = apply_cell(steerer, first.id, cell)
    assert [v.id for v in steerer.vectors] == [first.id, second.id]
    assert steerer.vectors[0].layer == 3 and steerer.vectors[0].alpha == pytest.approx(cell.alpha)
    assert steerer.vectors[1] is second and moved is steerer.vectors[0]
    steerer.reset()


@pytest.mark.parametrize(
    "layers, strengths, message",
    [
        ((), (1.0,), "1 to 32 layers"),
        ((1, 1), (1.0,), "must differ"),
        ((-1,), (1.0,), "whole numbers"),
        ((1,), (float("nan"),), "between"),
        ((1,), (100.0,), "between"),
    ],
)
def test_bad_grids_are_refused(layers, strengths, message):
    with pytest.raises(InvalidInputError, match=message):
        MapGrid(layers, strengths)


def test_out_of_range_layer_and_missing_texts_are_refused(tiny):
    steerer = steerer_for(tiny.model, tiny.tokenizer, tiny.name)
    steerer.reset()
    with pytest.raises(InvalidInputError, match="contrast prompts"):
        StrengthMap(steerer, CONCEPT, [], NEUTRAL)
    scorer = StrengthMap(steerer, CONCEPT, CONTRAST, NEUTRAL)
    with pytest.raises(InvalidInputError, match="out of range"):
        next(scorer.rows(MapGrid((1, 9)), lambda layer: torch.ones(32)))


def test_default_layers_spread_over_the_model():
    assert default_layers(30) == (0, 3, 6, 10, 13, 16, 19, 23, 26, 29)
    assert default_layers(4) == (0, 1, 2, 3)


def test_map_strength_uses_the_one_calibration(tiny):
    """The map converts strengths with the norms a vector records (100 neutral
    sentences), not with its own few KL sentences: a cell applied from the map
    has the strength the map showed."""
    steerer = steerer_for(tiny.model, tiny.tokenizer, tiny.name)
    steerer.reset()
    vector = capture_vector(steerer, CONCEPT, 1, 1.0, CONTRAST)
    scorer = StrengthMap(steerer, CONCEPT, CONTRAST, NEUTRAL[:2])
    assert scorer.layer_norms == pytest.approx(tuple(float(n) for n in steerer.layer_norms()))
    (cell,) = scorer.row(1, vector.direction, [0.3])
    assert cell_vector(steerer, vector, cell).strength == pytest.approx(0.3, rel=1e-5)
