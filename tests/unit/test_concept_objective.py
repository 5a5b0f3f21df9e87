"""The "concept strength" objective: the teacher-forced gain of
held-out concept examples over contrast examples, ranked within the KL budget."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from optimize import PsoConfig, SearchSpace, run_optimization
from optimize.guard.kl import GuardedFitness, KlGuard
from optimize.guard.objective import ObjectiveOptions, make_objective, uses_task
from optimize.run.optimization import RunPlan
from optimize.run.report import summary_lines
from optimize.scoring.concept import ConceptExamples, ConceptFitness, concept_search, split_examples
from steering import capture_vector, steerer_for
from steering.errors import InvalidInputError

CONCEPT = ["I am so happy today", "What a wonderful gift", "We laughed all day", "Joy fills me"]
CONTRAST = ["I am so sad today", "What a terrible loss", "We cried all day", "Grief fills me"]
NEUTRAL = ["The train leaves at nine.", "Add salt to the water.", "The shop opens on Monday."]


def _mean_loglik(model, tokenizer, text):
    """One unbatched forward: the text's mean per-token log-probability."""
    ids = torch.tensor(
        [[tokenizer.bos_token_id, *tokenizer.encode(text, add_special_tokens=False)]]
    )
    with torch.no_grad():
        logp = F.log_softmax(model(input_ids=ids).logits[0, :-1].float(), dim=-1)
    return float(logp.gather(1, ids[0, 1:, None]).double().mean())


def test_the_gain_equals_a_plain_reference_and_is_zero_unsteered(tiny):
    steerer = steerer_for(tiny.model, tiny.tokenizer, tiny.name)
    steerer.reset()
    vector = capture_vector(steerer, CONCEPT[:2], 1, 3.0, CONTRAST[:2])
    examples = ConceptExamples(tuple(CONCEPT[2:]), tuple(CONTRAST[2:]))
    fitness = ConceptFitness(steerer, examples)
    assert fitness.metrics(()).target == 0.0
    got = fitness.metrics([vector])

    def gap(steered):
        ll = {}
        for text in [*CONCEPT[2:], *CONTRAST[2:]]:
            if steered:
                with steerer.applied([vector]):
                    ll[text] = _mean_loglik(tiny.model, tiny.tokenizer, text)
            else:
                ll[text] = _mean_loglik(tiny.model, tiny.tokenizer, text)
        concept = sum(ll[t] for t in CONCEPT[2:]) / 2
        contrast = sum(ll[t] for t in CONTRAST[2:]) / 2
        return concept - contrast

    assert got.target == pytest.approx(gap(True) - gap(False), abs=1e-5)
    assert got.target != 0.0 and math.isfinite(got.target_stderr)
    assert steerer.vectors == ()  # scoring left nothing applied


def test_held_out_examples_never_build_the_vector(tiny):
    steerer = steerer_for(tiny.model, tiny.tokenizer, tiny.name)
    steerer.reset()
    vector = capture_vector(steerer, CONCEPT, 2, 1.5, CONTRAST)
    built, examples = split_examples(steerer, vector, 0.5, seed=3)
    assert len(examples.concept) == 2 and len(examples.contrast) == 2
    assert not set(examples.concept) & set(built.prompts)
    assert not set(examples.contrast) & set(built.contrast_prompts)
    assert set(examples.concept) | set(built.prompts) == set(CONCEPT)
    # pairs stay pairs (the same positions held out on both sides)
    assert [CONCEPT.index(t) for t in examples.concept] == [
        CONTRAST.index(t) for t in examples.contrast
    ]
    assert (built.id, built.layer, built.alpha, built.method) == (
        vector.id, vector.layer, vector.alpha, vector.method,
    )
    rebuilt = capture_vector(steerer, built.prompts, 2, 1.5, built.contrast_prompts)
    assert torch.allclose(built.direction, rebuilt.direction)
    assert split_examples(steerer, vector, 0.5, seed=3)[1] == examples  # seeded
    with pytest.raises(InvalidInputError, match="at least 2 of each"):
        split_examples(steerer, capture_vector(steerer, CONCEPT, 2, 1.0), 0.5)


def test_a_concept_search_ranks_the_gain_within_the_kl_budget(tiny):
    steerer = steerer_for(tiny.model, tiny.tokenizer, tiny.name)
    steerer.reset()
    steerer.add(capture_vector(steerer, CONCEPT, 1, 1.0, CONTRAST))
    originals = steerer.vectors
    budget = 0.0025  # the tiny model: KL 0.0015 at strength 0.5, 0.004 at 1
    # on this random model the concept rises toward negative strengths
    space = SearchSpace(1, 2, unit="strength", strength_min=-1.5, strength_max=0.0)
    with concept_search(steerer, [0], 0.5, seed=0) as fitness:
        assert steerer.vectors[0].prompts != originals[0].prompts  # the rebuilt vector
        scored = GuardedFitness(fitness, KlGuard(steerer, NEUTRAL))
        result = run_optimization(
            steerer,
            [0],
            RunPlan(
                scored,
                space,
                PsoConfig(particles=6, iterations=2, seed=0),
                objective="concept",
                options=ObjectiveOptions(kl_budget=budget),
            ),
        )
    assert steerer.vectors == originals  # the full vector is back
    assert result.objective == "concept" and not uses_task("concept")
    within = [e for e in result.evaluations if e.metrics["kl"] <= budget]
    over = [e for e in result.evaluations if e.metrics["kl"] > budget]
    assert within and over  # the budget binds on this grid
    assert result.best.metrics["kl"] <= budget
    assert result.best.metrics.target == max(e.metrics.target for e in within)
    ranking = make_objective("concept", options=ObjectiveOptions(kl_budget=budget))
    assert all(ranking.better(result.best.metrics, e.metrics) for e in over)
    # The command line's summary names what a concept run scored: no task, no task metric.
    lines = summary_lines(result)
    assert lines[0] == result.verdict.headline  # the verdict first
    first = next(line for line in lines if line.startswith("concept strength"))
    assert first.startswith("concept strength (nats per token) on ")
    assert "held-out concept and contrast prompts" in first and "task " not in first


def test_concept_search_takes_exactly_one_vector(tiny):
    steerer = steerer_for(tiny.model, tiny.tokenizer, tiny.name)
    steerer.reset()
    steerer.add(capture_vector(steerer, CONCEPT, 1, 1.0, CONTRAST))
    steerer.add(capture_vector(steerer, CONTRAST, 1, 1.0, CONCEPT))
    before = steerer.vectors
    with pytest.raises(InvalidInputError, match="one vector at a time"), concept_search(
        steerer, [0, 1]
    ):
        pass
    assert steerer.vectors == before
