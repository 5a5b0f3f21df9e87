"""A run's held-out split, objective and capability guard, checked once and
turned into the fitnesses a run scores with.

`python -m optimize` and the Optimize tab both take these five settings
(optimize/config/table.py, groups "held-out" and "guard") and must build the same
run from them: the searched side of the split with the KL guard (and the
guard task) on top, and the held-out side or the held-out task. This module is
that one construction, so the two cannot drift apart.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from optimize.config.configs import FitnessConfig
from optimize.run.first_round import check_first_round
from optimize.guard.objective import ObjectiveOptions, make_objective, uses_task
from optimize.config.table import BY_NAME, default
from optimize.guard.split import HELDOUT, SEARCH, DocumentSplit
from steering.errors import InvalidInputError

if TYPE_CHECKING:
    from optimize.guard.kl import GuardedFitness
    from optimize.scoring.metrics import Fitness
    from steering.engine import Steerer

NAMES = ("holdout_fraction", "objective", "kl_budget", "guard_task", "max_guard_drop")


@dataclass(frozen=True)
class GuardSettings:
    """The split, objective and guard settings of one run, each within the
    settings table's bounds. `guard_task` None (or blank) means no guard task;
    a `holdout_fraction` of 0 turns the split off."""

    holdout_fraction: float = float(default("holdout_fraction"))
    objective: str = str(default("objective"))
    kl_budget: float = float(default("kl_budget"))
    guard_task: str | None = None
    max_guard_drop: float = float(default("max_guard_drop"))

    def __post_init__(self) -> None:
        for name in NAMES:
            object.__setattr__(self, name, BY_NAME[name].check(getattr(self, name)))
        if not self.guard_task:
            object.__setattr__(self, "guard_task", None)
        make_objective(self.objective, options=self.options)  # an unknown name fails here

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> GuardSettings:
        """From a mapping by setting name; names it lacks take the table's default."""
        return cls(**{name: values[name] for name in NAMES if name in values})

    @property
    def options(self) -> ObjectiveOptions:
        return ObjectiveOptions(kl_budget=self.kl_budget, max_guard_drop=self.max_guard_drop)

    @property
    def scores_task(self) -> bool:
        """Whether the run scores an lm-eval task (concept strength scores the
        vector's own held-out prompts instead: `concept_fitness`)."""
        return uses_task(self.objective)

    def check_concept(self, vectors: int, heldout_task: bool, workers: int) -> None:
        """InvalidInputError unless a concept-strength run can be built from
        these: one vector, a held-out share above 0 (of its prompts), and no
        held-out task, guard task or workers (it scores in this process)."""
        if vectors != 1:
            raise InvalidInputError(
                "Concept strength searches one vector at a time (its own prompts are the "
                f"examples): select one, not {vectors}."
            )
        if self.holdout_fraction == 0:
            raise InvalidInputError(
                "Concept strength scores a held-out share of the vector's prompts: set the "
                "held-out share above 0 (0.5 holds out half of each list)."
            )
        if heldout_task or self.guard_task is not None or workers:
            raise InvalidInputError(
                "Concept strength scores the vector's own held-out prompts in this process: "
                "it takes no held-out task, guard task or Ray workers."
            )

    @contextmanager
    def concept_fitness(
        self, steerer: Steerer, indices: Sequence[int], seed: int, batch_size: int | None = None
    ) -> Iterator[GuardedFitness]:
        """What a concept-strength run scores (the command line's and the tab's):
        inside the block the vector `indices[0]` is rebuilt from its prompts
        not held out (the held-out share, with `seed`), the fitness scores the
        held-out ones with the KL guard; the full vector is back afterwards."""
        from optimize.scoring.concept import concept_search
        from optimize.guard.kl import GuardedFitness, KlGuard

        with concept_search(steerer, indices, self.holdout_fraction, seed) as target:
            yield GuardedFitness(target, KlGuard(steerer, batch_size=batch_size))

    def split(self, seed: int, heldout: FitnessConfig | None) -> DocumentSplit | None:
        """The document split of the search task: none when a held-out task
        replaces it (its documents are the held-out ones) or the fraction is 0."""
        if heldout is not None or self.holdout_fraction == 0:
            return None
        return DocumentSplit(self.holdout_fraction, seed)

    def guard_config(self, fitness: FitnessConfig) -> FitnessConfig | None:
        """The guard task, scored like the search task (same folder, limit,
        batch size); InvalidInputError when it is the search task itself."""
        if self.guard_task is None:
            return None
        guard = dataclasses.replace(fitness, task=self.guard_task)
        if (guard.task, guard.include_path) == (fitness.task, fitness.include_path):
            raise InvalidInputError("The guard task is the search task: pick another task.")
        return guard

    def check_first_round(self, fitness: FitnessConfig, first_round: int) -> int:
        """`first_round` (optimize/run/first_round.py; 0: none), InvalidInputError
        unless under the limit of `fitness`, in a run that scores a task."""
        return check_first_round(first_round, fitness.limit, self.scores_task)

    def first_round_fitness(
        self, steerer: Steerer, fitness: FitnessConfig, heldout: FitnessConfig | None,
        seed: int, first_round: int, sentences: int | None = None,
    ) -> GuardedFitness | None:  # fmt: skip
        """What a first round scores (None for 0): the run's search fitness
        (`guarded_fitness`) on the first `first_round` of its searched documents."""
        if not self.check_first_round(fitness, first_round):
            return None
        split, guard_task = self.split(seed, heldout), self.guard_config(fitness)
        return guarded_fitness(steerer, fitness, split, guard_task, sentences, first_round)

    @staticmethod
    def heldout_fitness(
        steerer: Steerer, fitness: FitnessConfig, heldout: FitnessConfig | None,
        split: DocumentSplit | None,
    ) -> Fitness | None:  # fmt: skip
        """What scores the held-out documents after the search: the held-out
        task, else the held-out side of the split, else None."""
        from optimize.scoring.fitness import LmEvalFitness

        if heldout is not None:
            return LmEvalFitness(steerer, heldout)
        if split is not None:
            return LmEvalFitness(steerer, fitness, split=split, side=HELDOUT)
        return None

    def fitnesses(
        self,
        steerer: Steerer,
        fitness: FitnessConfig,
        heldout: FitnessConfig | None,
        seed: int,
        sentences: int | None = None,
    ) -> tuple[GuardedFitness, Fitness | None]:
        """(what the search scores, what scores the held-out documents after it).

        The search scores the searched side of the split (or the whole task)
        with the KL guard (over `sentences` neutral sentences; None: the
        guard's default) and the guard task's metrics added
        (`guarded_fitness`); the held-out fitness is `heldout_fitness`."""
        split = self.split(seed, heldout)
        scored = guarded_fitness(steerer, fitness, split, self.guard_config(fitness), sentences)
        return scored, self.heldout_fitness(steerer, fitness, heldout, split)


def guarded_fitness(
    steerer: Steerer,
    fitness: FitnessConfig,
    split: DocumentSplit | None,
    guard_task: FitnessConfig | None,
    sentences: int | None = None,
    first: int | None = None,
) -> GuardedFitness:
    """The fitness every search setting is scored by: the task (its searched
    side when split), the KL guard on `sentences` neutral sentences (None: the
    guard's default) and the guard task; with `first`, the task's first
    `first` searched documents only (a first round). The one construction: the command
    line, the tab and each Ray worker (`optimize.run.recipe`) score alike."""
    from optimize.scoring.fitness import LmEvalFitness
    from optimize.guard.kl import GuardedFitness, KlGuard, neutral_sentences

    texts = None if sentences is None else neutral_sentences(count=sentences)
    return GuardedFitness(
        LmEvalFitness(steerer, fitness, split=split, side=SEARCH, first=first or None),
        KlGuard(steerer, texts, batch_size=fitness.batch_size),
        None if guard_task is None else LmEvalFitness(steerer, guard_task),
    )
