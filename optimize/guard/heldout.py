"""Scores on documents the search never saw: the baseline, the recommended
setting and (when it differs) the target-only best, with paired tests."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optimize.config.configs import FitnessConfig
from optimize.guard.split import PairedTest
from optimize.scoring.evaluation import Evaluation


def fitness_from_dict(data: dict[str, Any]) -> FitnessConfig:
    fitness = dict(data)
    if fitness.get("include_path") and not Path(fitness["include_path"]).is_dir():
        fitness["include_path"] = None  # the folder was moved; keep the record readable
    return FitnessConfig(**fitness)


def _paired(data: dict[str, Any] | None) -> PairedTest | None:
    return None if data is None else PairedTest.from_dict(data)


def _evaluation(data: dict[str, Any] | None) -> Evaluation | None:
    return None if data is None else Evaluation.from_dict(data)


@dataclass(frozen=True)
class HeldOutScores:
    """The unsteered model and the chosen setting scored on held-out
    documents (the held-out share of the search task, or a separate held-out
    task): documents the search never saw, so the gain there is not selected
    for.

    `baseline` has no layers (no steering at all, like the search baseline);
    `best` carries the layers and alphas of the setting the run's objective
    ranked best, and its iteration and particle. `paired` compares the two
    document by document (fixed vs broken, exact sign test). `target_only`
    is the best setting by the target metric alone, scored too when it is
    another setting (what ignoring the guard would have given), with its own
    `target_only_paired`. `documents` says which documents these are.
    """

    fitness: FitnessConfig
    metric: str
    higher_is_better: bool
    samples: int
    baseline: Evaluation
    best: Evaluation
    paired: PairedTest | None = None
    target_only: Evaluation | None = None
    target_only_paired: PairedTest | None = None
    documents: str = ""

    @property
    def gain_points(self) -> float:
        """Best minus baseline on the held-out documents, in points."""
        return 100.0 * (self.best.score - self.baseline.score)

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.fitness.task,
            "metric": self.metric,
            "higher_is_better": self.higher_is_better,
            "samples": self.samples,
            "documents": self.documents,
            "baseline": self.baseline.to_dict(),
            "best": self.best.to_dict(),
            "gain_points": self.gain_points,
            "paired": None if self.paired is None else self.paired.to_dict(),
            "target_only": None if self.target_only is None else self.target_only.to_dict(),
            "target_only_paired": (
                None if self.target_only_paired is None else self.target_only_paired.to_dict()
            ),
            "fitness": dataclasses.asdict(self.fitness),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HeldOutScores:
        return cls(
            fitness=fitness_from_dict(data["fitness"]),
            metric=str(data["metric"]),
            higher_is_better=bool(data["higher_is_better"]),
            samples=int(data["samples"]),
            baseline=Evaluation.from_dict(data["baseline"]),
            best=Evaluation.from_dict(data["best"]),
            paired=_paired(data.get("paired")),
            target_only=_evaluation(data.get("target_only")),
            target_only_paired=_paired(data.get("target_only_paired")),
            documents=str(data.get("documents", "")),
        )
