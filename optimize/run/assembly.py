"""The one assembly of a run: from its settings (optimize/run/settings.py) and
a loaded model to the `RunPlan` that `run_optimization` runs.

The command line, the Optimize tab, a resumed run and every Ray worker build
their run here, so they score alike: the search documents (raced in two
parts where the score allows it, optimize/scoring/racing.py) with the KL
guard (one per run) and the guard task on top; the confirmation documents;
the held-out documents or task; and for concept strength the vector's own
held-out prompts.

A run is also a picklable `RunRecipe` (the vector file's bytes, the settings,
where the model comes from), which is what a Ray worker is given to load the
same model and vectors and build the same search fitness in its own process.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optimize.guard.kl import GuardedFitness, KlGuard
from optimize.guard.split import CONFIRM, HELDOUT, SEARCH
from optimize.run.optimization import FluencyCheck, RunPlan
from optimize.run.settings import RunSettings
from optimize.scoring.fitness import LmEvalFitness
from optimize.scoring.metrics import Fitness
from optimize.scoring.racing import FIRST_PART, RacingFitness
from steering.fluency import FluencyReference, check_fluency, fluency_reference_and_checks

if TYPE_CHECKING:
    from steering.engine import Steerer
    from steering.models import LoadedModel
    from steering.vector import SteeringVector

# Fewer search documents than this are scored whole: a first part of one or
# two documents says nothing about a setting.
MIN_RACED_DOCUMENTS = 8


def base_vectors(steerer: Steerer, indices: Sequence[int]) -> list[SteeringVector]:
    """The active vectors a run on `indices` does not tune: on for the
    baseline and every setting alike."""
    chosen = set(indices)
    return [v for i, v in enumerate(steerer.vectors) if i not in chosen]


def _searched(steerer: Steerer, settings: RunSettings) -> tuple[Fitness, LmEvalFitness]:
    """The task on the search documents (raced in two parts when its score is
    a mean of per-document values and there are enough of them), and the part
    whose prefix scorer was checked against lm-eval (the other parts of the
    task are built `checked_with` it)."""
    config, split = settings.fitness, settings.split
    head = LmEvalFitness(steerer, config, split=split, side=SEARCH, part=(0.0, FIRST_PART))
    if head.per_document_mean and 2 * head.samples >= MIN_RACED_DOCUMENTS:
        tail = LmEvalFitness(
            steerer, config, split=split, side=SEARCH, part=(FIRST_PART, 1.0), checked_with=head
        )
        return RacingFitness(head, tail, settings.finalists), head
    whole = LmEvalFitness(steerer, config, split=split, side=SEARCH, checked_with=head)
    return whole, head


def _kl_budget(settings: RunSettings) -> float | None:
    """The KL a finalist may have: the budget, for objectives that keep it."""
    return None if settings.objective == "target" else settings.options.kl_budget


def search_fitness(
    steerer: Steerer, settings: RunSettings, base: Sequence[SteeringVector]
) -> GuardedFitness:
    """What every search setting is scored by: the task's search documents,
    the KL guard (its reference: the model with `base` on) and the guard task."""
    return _search_fitness(steerer, settings, base)[0]


def _search_fitness(
    steerer: Steerer, settings: RunSettings, base: Sequence[SteeringVector]
) -> tuple[GuardedFitness, LmEvalFitness]:
    guard = KlGuard(steerer, batch_size=settings.fitness.batch_size, base=base)
    guard_task = (
        None if settings.guard_task is None else LmEvalFitness(steerer, settings.guard_task)
    )
    searched, checked = _searched(steerer, settings)
    fitness = GuardedFitness(searched, guard, guard_task, base, _kl_budget(settings))
    return fitness, checked


class ReplyCheck:
    """Whether a setting's greedy replies to the shipped neutral prompts loop
    (steering/fluency.py), against the unsteered model's replies, which are
    generated once, in one batch with the first setting checked: a run that
    recommends nothing pays nothing. A model whose context cannot hold a prompt and
    MIN_REPLY_TOKENS new ones is not checked (the replies would say nothing)."""

    MIN_REPLY_TOKENS = 16

    def __init__(self, steerer: Steerer) -> None:
        self.steerer = steerer
        self._reference: FluencyReference | None = None

    def _tokens(self) -> int:
        """New tokens per reply: the check's default, within the model's context."""
        from steering.fluency import DEFAULT_FLUENCY_TOKENS, fluency_prompts
        from steering.generate import chat_input_ids

        longest = max(
            int(chat_input_ids(self.steerer.tokenizer, [{"role": "user", "content": p}]).shape[1])
            for p in fluency_prompts()
        )
        return min(DEFAULT_FLUENCY_TOKENS, self.steerer.info.max_context - longest)

    def __call__(self, vectors: Sequence[SteeringVector]) -> tuple[bool, str]:
        if self._reference is None:
            tokens = self._tokens()
            if tokens < self.MIN_REPLY_TOKENS:
                return False, ""
            self._reference, (found,) = fluency_reference_and_checks(
                self.steerer, [vectors], max_new_tokens=tokens
            )
        else:
            found = check_fluency(self.steerer, vectors, reference=self._reference)
        return found.loops, found.reason


@contextmanager
def assembled(
    settings: RunSettings,
    steerer: Steerer,
    indices: Sequence[int],
    fluency: FluencyCheck | None = None,
) -> Iterator[RunPlan]:
    """The plan a run of `settings` on the active vectors `indices` scores
    with. For concept strength, inside the block the vector is the one
    rebuilt from its prompts that are not held out; the active vectors are
    the same objects again afterwards. `fluency` checks the replies of a
    setting about to be recommended (default: `ReplyCheck`)."""
    settings.check_vectors(len(indices))
    space = settings.space(steerer.info.num_layers)
    common: dict[str, Any] = {
        "space": space,
        "pso": settings.pso,
        "objective": settings.objective,
        "options": settings.options,
        "strategy": settings.strategy,
        "fluency": ReplyCheck(steerer) if fluency is None else fluency,
        "budget_seconds": 60.0 * float(settings["budget"]),
    }
    base = base_vectors(steerer, indices)
    if not settings.scores_task:
        from optimize.scoring.concept import concept_search

        share, seed = float(settings["holdout_fraction"]), settings.pso.seed
        with concept_search(steerer, indices, share, seed) as target:
            guard = KlGuard(steerer, batch_size=settings.fitness.batch_size, base=base)
            fitness = GuardedFitness(target, guard, None, base, _kl_budget(settings))
            yield RunPlan(fitness, **common)
        return
    split = settings.split
    searched, checked = _search_fitness(steerer, settings, base)
    heldout: Fitness | None = None
    if settings.heldout is not None:
        heldout = LmEvalFitness(steerer, settings.heldout)
    elif split is not None and split.fraction > 0:
        heldout = LmEvalFitness(
            steerer, settings.fitness, split=split, side=HELDOUT, checked_with=checked
        )
    yield RunPlan(
        searched,
        confirm=LmEvalFitness(
            steerer, settings.fitness, split=split, side=CONFIRM, checked_with=checked
        ),
        heldout=heldout,
        finalists=settings.finalists,
        significance=settings.significance,
        **common,
    )


@dataclass(frozen=True)
class RunRecipe:
    """A run as a Ray worker (optimize/workers/ray.py) rebuilds it in another
    process: the vector file (its name says its format; its bytes travel,
    since a worker on another host need not see the driver's disk), the run's
    settings by name, and where the model comes from, as `steering.load_model`
    takes it (None device: CUDA when the process sees a GPU)."""

    vectors_name: str
    vectors_data: bytes
    settings: Mapping[str, Any]
    model: str | None = None
    gguf_file: str | None = None
    device: str | None = None

    @classmethod
    def of_file(cls, vectors: str | Path, settings: RunSettings, **rest: Any) -> RunRecipe:
        """The recipe for the vector file at `vectors` (read once, here)."""
        path = Path(vectors)
        return cls(path.name, path.read_bytes(), settings.to_values(), **rest)

    def load(self) -> tuple[LoadedModel, Steerer, list[SteeringVector]]:
        """Load the model, its Steerer and the vectors, checked against it.
        Keep the LoadedModel: the Steerer holds the model only weakly."""
        from steering import load_model, load_vectors, steerer_for

        loaded = load_model(self.model, self.gguf_file, self.device)
        steerer = steerer_for(loaded.model, loaded.tokenizer, loaded.name)
        with tempfile.TemporaryDirectory(prefix="steerswarm-vectors-") as folder:
            path = Path(folder) / self.vectors_name
            path.write_bytes(self.vectors_data)
            vectors = load_vectors(path, steerer.info)
        return loaded, steerer, vectors
