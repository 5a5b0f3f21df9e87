"""The Explore tab's computations on tensors and the tiny Llama: the layer scan
finds a planted layer, the inspector matches direct computations."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from steering.errors import InvalidInputError
from steering.explore import (
    DPRIME,
    DPRIME_LOO,
    cosine_matrix,
    direction_norms,
    final_norm_and_head,
    layer_scan,
    lens_logits,
    logit_lens,
    suggest_range,
    suggested_width,
)


def planted(layer: int, layers: int = 6, hidden: int = 16, prompts: int = 5, seed: int = 0):
    """Concept/contrast activations that are noise everywhere except at `layer`,
    where the two sets sit apart along one axis."""
    gen = torch.Generator().manual_seed(seed)
    concept = torch.randn(prompts, layers, hidden, generator=gen)
    contrast = torch.randn(prompts, layers, hidden, generator=gen)
    axis = torch.zeros(hidden)
    axis[3] = 1.0
    concept[:, layer] += 4.0 * axis
    contrast[:, layer] -= 4.0 * axis
    directions = concept.mean(0) - contrast.mean(0)
    return concept, contrast, directions


@pytest.mark.parametrize("measure", [DPRIME, DPRIME_LOO])
@pytest.mark.parametrize("layer", [0, 2, 5])
def test_scan_ranks_the_planted_layer_highest(measure, layer):
    concept, contrast, directions = planted(layer)
    scan = layer_scan(concept, contrast, directions, measure=measure, width=1)
    assert scan.best == layer
    assert (scan.low, scan.high) == (layer, layer)
    assert scan.measure == measure and len(scan.scores) == 6


def test_dprime_is_the_gap_of_projections_over_the_pooled_std():
    concept, contrast, directions = planted(1)
    scan = layer_scan(concept, contrast, directions, width=2)
    unit = directions[4].double() / directions[4].double().norm()
    a, b = concept[:, 4].double() @ unit, contrast[:, 4].double() @ unit
    expected = (a.mean() - b.mean()) / ((a.var() + b.var()) / 2).sqrt()
    assert scan.scores[4] == pytest.approx(float(expected), rel=1e-9)


def test_loo_dprime_projects_each_prompt_on_a_direction_made_without_it():
    concept, contrast, _ = planted(2, prompts=4)
    scan = layer_scan(concept, contrast, torch.zeros(6, 16), measure=DPRIME_LOO, width=1)
    a, b = concept[:, 2].double(), contrast[:, 2].double()
    pa = []
    for i in range(len(a)):
        d = torch.cat([a[:i], a[i + 1 :]]).mean(0) - b.mean(0)
        pa.append(a[i] @ (d / d.norm()))
    pb = []
    for i in range(len(b)):
        d = a.mean(0) - torch.cat([b[:i], b[i + 1 :]]).mean(0)
        pb.append(b[i] @ (d / d.norm()))
    pa, pb = torch.stack(pa), torch.stack(pb)
    expected = (pa.mean() - pb.mean()) / ((pa.var() + pb.var()) / 2).sqrt()
    assert scan.scores[2] == pytest.approx(float(expected), rel=1e-9)


def test_suggested_range_is_the_best_window():
    assert suggest_range([0, 1, 5, 4, 0, 6], 2) == (2, 3)
    assert suggest_range([3, 3, 3], 2) == (0, 1)  # ties: the lowest window
    assert suggest_range([1.0], 5) == (0, 0)
    assert suggested_width(30) == 5 and suggested_width(4) == 1


def test_scan_refuses_bad_input_with_clear_messages():
    concept, contrast, directions = planted(1)
    with pytest.raises(InvalidInputError, match="at least two concept and two contrast"):
        layer_scan(concept[:1], contrast, directions)
    with pytest.raises(InvalidInputError, match="Unknown scan measure"):
        layer_scan(concept, contrast, directions, measure="probe")
    with pytest.raises(InvalidInputError, match="Directions must be"):
        layer_scan(concept, contrast, directions[:2])


def test_norms_and_cosines_match_direct_computation():
    gen = torch.Generator().manual_seed(1)
    dirs = torch.randn(3, 8, generator=gen)
    assert direction_norms(dirs) == pytest.approx([float(d.norm()) for d in dirs])
    matrix = cosine_matrix([dirs[0], dirs[1], -dirs[0], torch.zeros(8)])
    assert matrix[0][1] == pytest.approx(float(F.cosine_similarity(dirs[0], dirs[1], dim=0)))
    assert matrix[0][2] == pytest.approx(-1.0)
    assert matrix[0][0] == 1.0 and matrix[3][3] == 0.0 and matrix[3][0] == 0.0


def test_logit_lens_is_final_norm_then_unembedding(tiny):
    model, tokenizer = tiny.model, tiny.tokenizer
    norm, head = final_norm_and_head(model)
    assert norm is model.model.norm and head is model.lm_head
    direction = torch.randn(32, generator=torch.Generator().manual_seed(2))
    weight = model.model.norm.weight.detach()
    eps = model.config.rms_norm_eps
    normed = direction / torch.sqrt(direction.pow(2).mean() + eps) * weight
    expected = model.lm_head.weight.detach() @ normed
    assert torch.allclose(lens_logits(norm, head, direction), expected, atol=1e-5)
    lens = logit_lens(norm, head, tokenizer, direction, k=5)
    assert [t.token_id for t in lens.promoted] == expected.topk(5).indices.tolist()
    assert [t.token_id for t in lens.suppressed] == (-expected).topk(5).indices.tolist()
    assert lens.promoted[0].text == tokenizer.decode([lens.promoted[0].token_id])
    assert lens.promoted[0].logit == pytest.approx(float(expected.max()), abs=1e-5)
    with pytest.raises(InvalidInputError, match="between 1 and 100"):
        logit_lens(norm, head, tokenizer, direction, k=0)


def test_the_final_norm_is_found_on_other_layouts(tiny_gpt2):
    norm, head = final_norm_and_head(tiny_gpt2.model)
    assert norm is tiny_gpt2.model.transformer.ln_f and head is tiny_gpt2.model.lm_head
