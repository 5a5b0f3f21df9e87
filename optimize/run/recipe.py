"""Everything needed to build a run's search fitness on a freshly loaded model,
as one picklable value: what the command line builds in its own process, and
what each Ray worker (`optimize.workers.ray`) builds again in its own, so both
score a setting alike.

The vector file travels as its bytes (a worker on another host need not see
the driver's disk); the model is named the way `--model` / `--gguf-file`
name it, and every host loads it from there (docs/scale-out.md).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optimize.config.configs import FitnessConfig
from optimize.guard.split import SEARCH, DocumentSplit

if TYPE_CHECKING:
    from optimize.scoring.fitness import LmEvalFitness
    from optimize.guard.kl import GuardedFitness
    from steering.engine import Steerer
    from steering.models import LoadedModel
    from steering.vector import SteeringVector


@dataclass(frozen=True)
class RunRecipe:
    """How to load the model and vectors and build the search fitness.

    `model`, `gguf_file`, `device`: as `steering.load_model` takes them (None
    device: CUDA when the process sees a GPU). `vectors_name` and
    `vectors_data`: the vector file's name (its suffix says its format) and
    bytes. `fitness`: the search task; `split`: the document split whose
    searched side is scored (None: all documents); `kl_guard`: whether the
    KL guard scores each setting too (the command line's fitness; the
    Optimize tab scores the task alone); `guard_task`: the optional guard
    task (`optimize.guard.kl`); `first_round`: score only the first this many
    searched documents (optimize/run/first_round.py; 0: all)."""

    vectors_name: str
    vectors_data: bytes
    fitness: FitnessConfig
    model: str | None = None
    gguf_file: str | None = None
    device: str | None = None
    split: DocumentSplit | None = None
    guard_task: FitnessConfig | None = None
    kl_guard: bool = True
    first_round: int = 0

    @classmethod
    def of_file(cls, vectors: str | Path, fitness: FitnessConfig, **rest: Any) -> RunRecipe:
        """The recipe for the vector file at `vectors` (read once, here)."""
        path = Path(vectors)
        return cls(vectors_name=path.name, vectors_data=path.read_bytes(), fitness=fitness, **rest)


def search_fitness(steerer: Steerer, recipe: RunRecipe) -> GuardedFitness | LmEvalFitness:
    """The fitness every search setting is scored by: the task (its searched
    side when split), the KL guard on the neutral set, and the guard task."""
    from optimize.config.guard import guarded_fitness

    if not recipe.kl_guard:
        from optimize.scoring.fitness import LmEvalFitness

        return LmEvalFitness(
            steerer, recipe.fitness, split=recipe.split, side=SEARCH, first=recipe.first_round or None
        )
    return guarded_fitness(
        steerer, recipe.fitness, recipe.split, recipe.guard_task, first=recipe.first_round
    )


def load_recipe(recipe: RunRecipe) -> tuple[LoadedModel, Steerer, list[SteeringVector]]:
    """Load the recipe's model, its Steerer and the vectors, checked against
    it. Keep the LoadedModel: the Steerer holds the model only weakly."""
    from steering import load_model, load_vectors, steerer_for

    loaded = load_model(recipe.model, recipe.gguf_file, recipe.device)
    steerer = steerer_for(loaded.model, loaded.tokenizer, loaded.name)
    with tempfile.TemporaryDirectory(prefix="steerswarm-vectors-") as folder:
        path = Path(folder) / recipe.vectors_name
        path.write_bytes(recipe.vectors_data)
        vectors = load_vectors(path, steerer.info)
    return loaded, steerer, vectors
