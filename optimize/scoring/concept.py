"""The "concept strength" objective: search a style vector with no benchmark.

A user with only concept and contrast prompts ("happy" and "sad" sentences)
has no lm-eval task to score a setting with. This fitness scores how much a
setting raises the log-likelihood of concept examples over contrast examples:

    gain = [mean_c ll(c) - mean_k ll(k)]_steered - [the same]_unsteered

where ll(t) is the mean per-token log-probability of text t, teacher-forced
(one batched forward over every example, no generation). It is the gain the
Explore map shows per cell, measured on examples the vector was not built
from: `split_examples` holds out a seeded share of the vector's own prompts
and rebuilds the vector, with its own method, from the rest.

Alone, the gain grows with strength long past the point where text stops
being fluent, so the objective that ranks it is the guard's
(`optimize.guard.kl`): the largest gain among the settings whose mean KL on the
neutral set stays within the budget. That is "the strongest setting that
keeps text fluent".
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from optimize.config.configs import FitnessConfig
from optimize.scoring.metrics import Metrics
from steering.engine import Steerer
from steering.errors import InvalidInputError
from steering.explore_map import padded_texts
from steering.extract import VectorSource
from steering.extract.base import CONTRAST_PROMPTS, PROMPTS
from steering.rng import preserved_rng
from steering.vector import SteeringVector

# The objective's registered name (optimize.guard.objective.OBJECTIVES).
CONCEPT = "concept"
# What the result file records as the "task" of a concept-strength run.
CONCEPT_TASK = "concept_strength"
# The metric it records: the gain in mean log-likelihood per token.
CONCEPT_METRIC = "gain"
# Share of each prompt list held out for scoring by default.
DEFAULT_HOLDOUT = 0.5


@dataclass(frozen=True)
class ConceptExamples:
    """Held-out texts the gain is measured on (neither built the vector)."""

    concept: tuple[str, ...]
    contrast: tuple[str, ...]

    def __post_init__(self) -> None:
        for name in ("concept", "contrast"):
            given = getattr(self, name)
            texts = tuple(t.strip() for t in given if isinstance(t, str) and t.strip())
            if not texts:
                raise InvalidInputError(
                    f"Concept strength needs at least one held-out {name} example."
                )
            object.__setattr__(self, name, texts)


def held_out_count(count: int, share: float) -> int:
    """How many of `count` prompts are held out: round(share x count), at
    least 1 and at most count - 1 (so one is left to build from)."""
    return min(count - 1, max(1, round(share * count)))


def _held(count: int, share: float, seed: int) -> list[int]:
    """The positions held out of `count` prompts (`held_out_count` of them)."""
    keep = held_out_count(count, share)
    return sorted(int(i) for i in np.random.default_rng(seed).permutation(count)[:keep])


def split_examples(
    steerer: Steerer, vector: SteeringVector, share: float = DEFAULT_HOLDOUT, seed: int = 0
) -> tuple[SteeringVector, ConceptExamples]:
    """(the vector rebuilt from the prompts not held out, the held-out
    examples). The rebuilt vector keeps the id, layer, alpha and method, so a
    result found with it applies to the full vector afterwards. With equally
    many concept and contrast prompts (pairs, as pca_diff needs) the same
    positions of both lists are held out.

    Raises InvalidInputError for a vector without two or more prompts on each
    side (a task-pair or imported vector has none to hold out)."""
    if not isinstance(share, (int, float)) or isinstance(share, bool) or not 0 < share < 1:
        raise InvalidInputError(f"The held-out share must be between 0 and 1, got {share!r}.")
    concept, contrast = vector.prompts, vector.contrast_prompts
    if len(concept) < 2 or len(contrast) < 2:
        raise InvalidInputError(
            "Concept strength scores held-out concept and contrast prompts: the vector needs "
            f"at least 2 of each (it has {len(concept)} and {len(contrast)}). Make it from "
            "concept and contrast prompts in the Steering tab."
        )
    held_c = _held(len(concept), share, seed)
    held_k = held_c if len(contrast) == len(concept) else _held(len(contrast), share, seed + 1)
    inputs = dict(vector.source.inputs)
    inputs[PROMPTS] = tuple(p for i, p in enumerate(concept) if i not in held_c)
    inputs[CONTRAST_PROMPTS] = tuple(p for i, p in enumerate(contrast) if i not in held_k)
    source = VectorSource(vector.method, inputs)
    built = dataclasses.replace(
        vector,
        source=source,
        direction=source.direction(steerer, vector.layer),
        layer_norm=steerer.layer_norm(vector.layer),
    )
    examples = ConceptExamples(
        tuple(concept[i] for i in held_c), tuple(contrast[i] for i in held_k)
    )
    return built, examples


class ConceptFitness:
    """A Fitness whose target is the concept gain (nats per token) of a
    setting on `examples`, with its standard error (from the spread of the
    per-text log-likelihood changes). Higher is better."""

    higher_is_better = True

    def __init__(self, steerer: Steerer, examples: ConceptExamples) -> None:
        self.steerer = steerer
        self.examples = examples
        texts = [*examples.concept, *examples.contrast]
        self.samples = len(texts)
        self.config = FitnessConfig(task=CONCEPT_TASK, metric=CONCEPT_METRIC, limit=len(texts))
        self._ids, self._mask = self._batch(steerer, texts)
        self._base = self._loglik(())

    @property
    def metric_key(self) -> str:
        return CONCEPT_METRIC

    @staticmethod
    def _batch(steerer: Steerer, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        ids, lengths = padded_texts(steerer, texts)
        mask = torch.arange(ids.shape[1], device=ids.device)[None, :] < torch.tensor(
            lengths, device=ids.device
        )[:, None]
        return ids, mask

    def _loglik(self, vectors: Sequence[SteeringVector]) -> torch.Tensor:
        """[texts] float64: each text's mean per-token log-probability (the
        first token, predicted from nothing, left out), steered by `vectors`."""
        with preserved_rng(), torch.no_grad(), self.steerer.applied(vectors):
            logits = self.steerer.model(input_ids=self._ids, attention_mask=self._mask).logits
        logp = F.log_softmax(logits[:, :-1].float(), dim=-1)
        picked = logp.gather(2, self._ids[:, 1:, None])[..., 0].double()
        scored = self._mask[:, 1:]
        return torch.where(scored, picked, 0.0).sum(1) / scored.sum(1)

    def metrics(self, vectors: Sequence[SteeringVector]) -> Metrics:
        change = (self._loglik(vectors) - self._base).cpu().numpy()
        n = len(self.examples.concept)
        up, down = change[:n], change[n:]
        gain = float(up.mean() - down.mean())
        var = (up.var(ddof=1) / len(up) if len(up) > 1 else math.nan) + (
            down.var(ddof=1) / len(down) if len(down) > 1 else math.nan
        )
        return Metrics.of_target(gain, math.sqrt(var) if math.isfinite(var) else math.nan)


@contextmanager
def concept_search(
    steerer: Steerer,
    indices: Sequence[int],
    share: float = DEFAULT_HOLDOUT,
    seed: int = 0,
) -> Iterator[ConceptFitness]:
    """For a concept-strength run on the active vector `indices[0]` (exactly
    one): inside the block that vector is the one rebuilt from its prompts
    that are not held out (`split_examples`), and the fitness scores the
    held-out ones. The active vectors are the same objects again afterwards,
    so "Apply best" applies the found layer and alpha to the full vector.

    Raises InvalidInputError for a selection of other than one vector."""
    if len(indices) != 1:
        raise InvalidInputError(
            "Concept strength searches one vector at a time (its own prompts are the "
            f"examples): select one, not {len(indices)}."
        )
    originals = steerer.vectors
    index = indices[0]
    if not 0 <= index < len(originals):
        raise InvalidInputError(f"There is no vector number {index + 1}.")
    built, examples = split_examples(steerer, originals[index], share, seed)
    fitness = ConceptFitness(steerer, examples)
    steerer.set_vectors([built if i == index else v for i, v in enumerate(originals)])
    try:
        yield fitness
    finally:
        steerer.set_vectors(originals)

