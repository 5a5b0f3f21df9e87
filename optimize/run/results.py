"""What a run reports: the evaluations, progress, and the result (saved as JSON)."""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from optimize.config.configs import FitnessConfig, PsoConfig
from optimize.scoring.evaluation import Evaluation
from optimize.guard.front import Recommendation, pareto_front, recommend
from optimize.guard.heldout import HeldOutScores, fitness_from_dict
from optimize.guard.objective import Objective, ObjectiveOptions, make_objective
from optimize.config.space import SearchSpace, Setting
from optimize.scoring.placing import TunedVector, VectorRecord, tune
from optimize.guard.split import DocumentSplit
from steering.errors import InvalidInputError

__all__ = [
    "Evaluation",
    "HeldOutScores",
    "OptimizationResult",
    "Progress",
    "TunedVector",
    "VectorRecord",
    "tune",
]

FORMAT = "steerswarm.optimization"
# 2: every evaluation records its named metrics; the result its objective and
# strategy. 3: the objective's options, the document split, the Pareto front
# and the recommendation. Version 1 files (score and stderr only, objective
# "target", PSO) and 2 still load.
FORMAT_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Progress:
    """Reported after the baseline and after every evaluation.

    `best_score` is the best setting's score so far (None until one is
    scored), `best` that setting's evaluation; `latest` is the evaluation just
    finished. After the search, a run with a
    held-out task reports once more per held-out scoring, with `phase`
    "heldout" and `latest` None (those scores are not search evaluations).
    A run with a first round reports its search with phase "first_round"
    (scores on fewer documents) and then each finalist with phase "finalists".
    """

    done: int
    total: int
    best_score: float | None
    baseline: float | None
    latest: Evaluation | None
    phase: str = "search"
    best: Evaluation | None = None

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 1.0


@dataclass(frozen=True)
class FirstRound:
    """What a run's first round scored: the first `samples` documents of the
    searched ones, and every evaluation of the search on them."""

    samples: int
    evaluations: tuple[Evaluation, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"samples": self.samples, "evaluations": [e.to_dict() for e in self.evaluations]}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> FirstRound | None:
        if not data:
            return None
        return cls(
            samples=int(data["samples"]),
            evaluations=tuple(Evaluation.from_dict(e) for e in data["evaluations"]),
        )

    def line(self, finalists: int) -> str:
        """One sentence for a run's summary."""
        distinct = len({e.setting.key for e in self.evaluations})
        return (
            f"first round: {distinct} settings scored on the first {self.samples} documents; "
            f"the best {finalists} of them then on every document"
        )


@dataclass(frozen=True)
class OptimizationResult:
    """The outcome of `run_optimization`.

    `history` holds every evaluation in order, the baseline first. `best` is
    the best scored setting (never the baseline); it may score below the
    baseline when no setting helped. Particles score the user's active vectors
    with the selected ones set to the particle's layer and alpha; the baseline
    is the model with no steering at all. `cancelled` runs hold the
    evaluations done before the cancel. `heldout` holds the baseline and best
    setting scored on a held-out task, when the run was given one and was not
    cancelled before scoring it. With a first round (optimize/run/first_round.py),
    `history` holds the baseline and the finalists, scored on every document,
    and `first_round` the search's evaluations on fewer documents.
    """

    baseline: Evaluation
    best: Evaluation
    history: list[Evaluation]
    vector_indices: tuple[int, ...]
    vectors: tuple[VectorRecord, ...]
    seed: int
    fitness: FitnessConfig
    space: SearchSpace
    pso: PsoConfig
    model: str
    num_layers: int
    metric: str
    higher_is_better: bool
    samples: int
    cancelled: bool
    wall_seconds: float
    created_at: str = field(default_factory=_now)
    heldout: HeldOutScores | None = None
    objective: str = "target"
    strategy: str = "pso"
    objective_options: ObjectiveOptions = field(default_factory=ObjectiveOptions)
    split: DocumentSplit | None = None
    first_round: FirstRound | None = None

    @property
    def front(self) -> list[Evaluation]:
        """The Pareto front of the search (target vs KL, and guard score)."""
        return pareto_front(self.history, self.higher_is_better)

    @property
    def recommendation(self) -> Recommendation:
        """The setting to apply (or none), and why: `best` when it keeps the
        objective's limits, steers and beats the baseline (`improved`)."""
        return recommend(self.baseline, self.best, self.ranking)

    @property
    def target_only_best(self) -> Evaluation:
        """The best search evaluation by the target metric alone."""
        return make_objective("target", self.higher_is_better).best(self.evaluations)

    @property
    def gain_points(self) -> float:
        """Best minus baseline, in points (x100: 0.62 vs 0.55 accuracy is 7 points)."""
        return 100.0 * (self.best.score - self.baseline.score)

    @property
    def improved(self) -> bool:
        """Whether the best setting beats the unsteered model: it ranks above
        the baseline and steers at all (some alpha is not 0). Only then is it
        offered as a gain; otherwise no setting beat the unsteered model."""
        return self.recommendation.evaluation is not None

    @property
    def evaluations(self) -> list[Evaluation]:
        """The scored settings, without the baseline."""
        return [e for e in self.history if not e.is_baseline]

    @property
    def paid_evaluations(self) -> int:
        """Evaluations that ran the model (the baseline included; cache hits not)."""
        return sum(1 for e in self.history if not e.cached)

    @property
    def ranking(self) -> Objective:
        """The objective this run ranked by: what "best" means for it."""
        return make_objective(self.objective, self.higher_is_better, self.objective_options)

    def running_best(self) -> list[float]:
        """The best setting's score after each scored setting (not the baseline)."""
        return [e.score for e in self.ranking.running_best(self.evaluations)]

    def best_by_iteration(self) -> list[float]:
        """The best setting's score up to the end of each iteration."""
        best: list[float] = []
        evaluations = self.evaluations
        for e, leader in zip(evaluations, self.ranking.running_best(evaluations), strict=True):
            while len(best) <= e.iteration:
                best.append(leader.score)
            best[e.iteration] = leader.score
        return best

    def final_progress(self) -> Progress:
        """The progress a view shows once the run ended: all of it, or (when
        cancelled) as far as it got."""
        heldout = self.heldout  # the baseline, the best and maybe the target-only best
        held = 0 if heldout is None else 2 + (heldout.target_only is not None)
        done = len(self.history) + held
        finalists = 0
        if self.first_round is not None:  # its evaluations are done, the finalists in history
            done += len(self.first_round.evaluations)
            finalists = len(self.evaluations)
        return Progress(
            done=done,
            total=done if self.cancelled else 1 + self.pso.evaluations + finalists + held,
            best_score=self.best.score,
            baseline=self.baseline.score,
            latest=self.history[-1],
            best=self.best,
        )

    def tuned(self, evaluation: Evaluation | None = None) -> tuple[TunedVector, ...]:
        """Each optimized vector with its layer and alpha in `evaluation`
        (default: the best): the one place a setting meets its vectors."""
        chosen = self.best if evaluation is None else evaluation
        return tune(self.vectors, chosen.setting)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "created_at": self.created_at,
            "model": {"name": self.model, "num_layers": self.num_layers},
            "task": self.fitness.task,
            "metric": self.metric,
            "higher_is_better": self.higher_is_better,
            "samples": self.samples,
            "baseline": self.baseline.to_dict(),
            "best": self.best.to_dict(),
            "gain_points": self.gain_points,
            "cancelled": self.cancelled,
            "wall_seconds": self.wall_seconds,
            "seed": self.seed,
            "vector_indices": list(self.vector_indices),
            "vectors": [v.to_dict() for v in self.vectors],
            "fitness": dataclasses.asdict(self.fitness),
            "space": dataclasses.asdict(self.space),
            "pso": dataclasses.asdict(self.pso),
            "best_by_iteration": self.best_by_iteration(),
            "history": [e.to_dict() for e in self.history],
            "heldout": None if self.heldout is None else self.heldout.to_dict(),
            "objective": self.objective,
            "strategy": self.strategy,
            "objective_options": self.objective_options.to_dict(),
            "split": None if self.split is None else self.split.to_dict(),
            "first_round": None if self.first_round is None else self.first_round.to_dict(),
            "front": [{"iteration": e.iteration, "particle": e.particle} for e in self.front],
            "recommendation": self.recommendation.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OptimizationResult:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise InvalidInputError("This is not a steerswarm optimization result.")
        if data.get("version") not in READABLE_VERSIONS:
            raise InvalidInputError(
                f"This optimization result has format version {data.get('version')!r}; "
                f"this steerswarm reads versions "
                f"{', '.join(str(v) for v in READABLE_VERSIONS)}."
            )
        try:
            heldout = data.get("heldout")
            return cls(
                baseline=Evaluation.from_dict(data["baseline"]),
                best=Evaluation.from_dict(data["best"]),
                history=[Evaluation.from_dict(e) for e in data["history"]],
                vector_indices=tuple(int(i) for i in data["vector_indices"]),
                vectors=tuple(VectorRecord.from_dict(v) for v in data["vectors"]),
                seed=int(data["seed"]),
                fitness=fitness_from_dict(data["fitness"]),
                space=SearchSpace(**data["space"]),
                pso=PsoConfig(**data["pso"]),
                model=str(data["model"]["name"]),
                num_layers=int(data["model"]["num_layers"]),
                metric=str(data["metric"]),
                higher_is_better=bool(data["higher_is_better"]),
                samples=int(data["samples"]),
                cancelled=bool(data["cancelled"]),
                wall_seconds=float(data["wall_seconds"]),
                created_at=str(data.get("created_at", "")),
                heldout=None if heldout is None else HeldOutScores.from_dict(heldout),
                objective=str(data.get("objective", "target")),
                strategy=str(data.get("strategy", "pso")),
                objective_options=ObjectiveOptions.from_dict(data.get("objective_options")),
                split=None if data.get("split") is None else DocumentSplit.from_dict(data["split"]),
                first_round=FirstRound.from_dict(data.get("first_round")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInputError(f"The optimization result is incomplete: {exc!r}.") from exc

    def save(self, path: str | Path) -> Path:
        """Write the result as JSON, atomically (a failure leaves no partial file)."""
        path = Path(path)
        text = json.dumps(self.to_dict(), indent=2, allow_nan=False)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text + "\n")
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def load(cls, path: str | Path) -> OptimizationResult:
        path = Path(path)
        if not path.is_file():
            raise InvalidInputError(f"Result file not found: {path}")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InvalidInputError(f"{path.name} is not a readable result file: {exc}") from exc
        return cls.from_dict(data)
