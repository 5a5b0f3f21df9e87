"""What a run reports: the evaluations, progress, and the result (saved as JSON)."""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from optimize.config.configs import FitnessConfig, PsoConfig
from optimize.config.space import SearchSpace, Setting
from optimize.guard.front import pareto_front
from optimize.guard.heldout import HeldOutScores, fitness_from_dict
from optimize.guard.objective import Objective, ObjectiveOptions, make_objective, uses_task
from optimize.guard.split import DocumentSplit
from optimize.guard.verdict import Confirmation, Verdict, decide
from optimize.scoring.evaluation import Evaluation
from optimize.scoring.placing import TunedVector, VectorRecord, tune
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
# and the recommendation. 4: the confirmation of the finalists on their own
# documents, the replies checked for loops, and the verdict. Earlier versions
# still load; nothing in them was confirmed, so nothing is recommended.
FORMAT_VERSION = 4
READABLE_VERSIONS = (1, 2, 3, 4)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Progress:
    """Reported after the baseline and after every evaluation.

    `best_score` is the best setting's score so far (None until one is
    scored), `best` that setting's evaluation; `latest` is the evaluation just
    finished. After the search, each confirmation scoring is reported with
    `phase` "confirm" (optimize/run/confirm.py), then each held-out scoring
    with `phase` "heldout" and `latest` None.
    """

    done: int
    total: int
    best_score: float | None
    baseline: float | None
    latest: Evaluation | None
    phase: str = "search"
    best: Evaluation | None = None
    note: str = ""  # a sentence about the run's plan (its time budget), once known

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 1.0


@dataclass(frozen=True)
class OptimizationResult:
    """The outcome of `run_optimization`.

    `history` holds every search evaluation in order, the baseline first,
    on the search documents. `best` is the objective's best of them (never the
    baseline); it may score below the baseline when no setting helped.
    Settings score the user's active vectors with the selected ones set to
    the setting's layer and alpha; the baseline the active vectors that were
    not selected. `confirmation` holds the baseline and the finalists on the
    confirmation documents; `heldout` the baseline and the chosen setting on
    the held-out documents. `verdict` says what is recommended, if anything.
    `cancelled` runs hold what was done before the cancel.
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
    confirmation: Confirmation | None = None
    # settings whose replies looped when checked, with the reason shown
    loops: tuple[tuple[Setting, str], ...] = ()
    significance: float = 0.05
    finalists: int = 3
    scores_task: bool = True
    planned: int = 0  # evaluations the run planned (0: not recorded)
    documents: str = ""  # which documents the search ranked on, for people
    confirm_planned: bool = False  # whether the run had confirmation documents

    @property
    def front(self) -> list[Evaluation]:
        """The Pareto front of the search (target vs KL, and guard score)."""
        return pareto_front(self.history, self.higher_is_better)

    @property
    def verdict(self) -> Verdict:
        """What the run found and whether it recommends a setting
        (optimize/guard/verdict.py): the one answer every view shows."""
        looping = {setting.key: reason for setting, reason in self.loops}
        finalists = () if self.confirmation is None else self.confirmation.finalists
        candidates = [*self.history, *finalists]
        loops = [(e, looping[e.setting.key]) for e in candidates if e.setting.key in looping]
        return decide(
            self.ranking,
            self.baseline,
            self.best,
            confirmation=self.confirmation,
            heldout=None if self.heldout is None else self.heldout.paired,
            loops=loops,
            cancelled=self.cancelled,
            scores_task=self.scores_task,
            significance=self.significance,
            confirm_planned=self.confirm_planned,
        )

    @property
    def target_only_best(self) -> Evaluation:
        """The best search evaluation by the target metric alone."""
        return make_objective("target", self.higher_is_better).best(self.evaluations)

    @property
    def gain_points(self) -> float:
        """Best minus baseline, in points (x100: 0.62 vs 0.55 accuracy is 7 points)."""
        return 100.0 * (self.best.score - self.baseline.score)

    def search_evaluation(self, setting: Setting) -> Evaluation | None:
        """The first search evaluation of `setting` (its scores on the search
        documents), or None when the search never scored it."""
        return next((e for e in self.evaluations if e.setting.key == setting.key), None)

    @property
    def improved(self) -> bool:
        """Whether the run recommends a setting (its verdict's rule)."""
        return self.verdict.recommended is not None

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
        heldout = 0 if self.heldout is None else 2
        confirmed = 0 if self.confirmation is None else 1 + len(self.confirmation.finalists)
        done = len(self.history) + confirmed + heldout
        return Progress(
            done=done,
            total=max(done, self.planned) if self.cancelled else done,
            best_score=self.best.score,
            baseline=self.baseline.score,
            latest=self.history[-1],
            best=self.best,
        )

    def tuned(self, evaluation: Evaluation | None = None) -> tuple[TunedVector, ...]:
        """Each optimized vector with its layer and alpha in `evaluation`
        (default: the best search evaluation)."""
        chosen = self.best if evaluation is None else evaluation
        return self.tuned_setting(chosen.setting)

    def tuned_setting(self, setting: Setting) -> tuple[TunedVector, ...]:
        """Each optimized vector with its layer and alpha in `setting`: the
        one place a setting meets its vectors."""
        return tune(self.vectors, setting)

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
            "confirmation": None if self.confirmation is None else self.confirmation.to_dict(),
            "loops": [
                {"layers": list(s.layers), "alphas": list(s.alphas), "reason": reason}
                for s, reason in self.loops
            ],
            "significance": self.significance,
            "finalists": self.finalists,
            "scores_task": self.scores_task,
            "planned": self.planned,
            "documents": self.documents,
            "confirm_planned": self.confirm_planned,
            "front": [{"iteration": e.iteration, "particle": e.particle} for e in self.front],
            "verdict": self.verdict.to_dict(),
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
                # a result from before the velocity limit was searched with pyswarms' own start
                pso=PsoConfig(**{"velocity_limit": 0.0, **data["pso"]}),
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
                confirmation=Confirmation.from_dict(data.get("confirmation")),
                loops=tuple(
                    (
                        Setting(
                            tuple(int(v) for v in item["layers"]),
                            tuple(float(v) for v in item["alphas"]),
                        ),
                        str(item["reason"]),
                    )
                    for item in data.get("loops", ())
                ),
                significance=float(data.get("significance", 0.05)),
                finalists=int(data.get("finalists", 3)),
                scores_task=bool(
                    data.get("scores_task", uses_task(str(data.get("objective", "target"))))
                ),
                planned=int(data.get("planned", 0)),
                documents=str(data.get("documents", "")),
                # written before confirmation documents existed: nothing was confirmed
                confirm_planned=bool(data.get("confirm_planned", False)),
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
