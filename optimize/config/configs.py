"""What to score with (FitnessConfig) and how to search (PsoConfig).

Both are validated when built, with messages a UI can show verbatim.
"""

from __future__ import annotations

from dataclasses import dataclass

from optimize.config.table import BY_NAME, default
from steering import validate
from steering.errors import InvalidInputError
from steering.lm_eval_tasks import checked_folder, checked_name

# np.random.seed accepts 0 <= seed < 2**32.
MAX_SEED = 2**32 - 1

@dataclass(frozen=True)
class FitnessConfig:
    """The lm-eval task that scores a steering setting.

    Attributes:
        task: a registered lm-eval task or group name (e.g. "pubmedqa", which
            needs internet for its data), or the name of a task in `include_path`.
        include_path: a folder of local task YAMLs. When given, only that folder
            is searched (fast: the 14,000 built-in tasks are not indexed).
        metric: the metric to maximise ("acc"), optionally with its filter
            ("exact_match,strict-match"). Lower-is-better metrics are minimised.
        limit: score only the first `limit` documents (None: all of them).
        batch_size: lm-eval batch size; scores do not depend on it.
        num_fewshot: few-shot examples per prompt (a task that fixes 0 keeps 0).
    """

    task: str
    include_path: str | None = None
    metric: str = default("metric")
    limit: int | None = default("limit")
    batch_size: int = default("batch_size")
    num_fewshot: int = default("num_fewshot")

    def __post_init__(self) -> None:
        if not isinstance(self.task, str) or not self.task.strip():
            raise InvalidInputError(f"Enter an lm-eval task name, got {self.task!r}.")
        object.__setattr__(self, "task", checked_name("The task", self.task.strip()))
        if self.include_path is not None:
            object.__setattr__(self, "include_path", checked_folder(self.include_path))
        if not isinstance(self.metric, str) or not self.metric.strip():
            raise InvalidInputError(f"Enter a metric name such as 'acc', got {self.metric!r}.")
        object.__setattr__(self, "metric", checked_name("The metric", self.metric.strip()))
        if self.limit is not None:
            object.__setattr__(self, "limit", BY_NAME["limit"].check(self.limit))
        for name in ("batch_size", "num_fewshot"):
            object.__setattr__(self, name, BY_NAME[name].check(getattr(self, name)))


@dataclass(frozen=True)
class PsoConfig:
    """The particle swarm: its size, length, coefficients and seed.

    Attributes:
        particles: particles in the swarm (each iteration scores each once).
        iterations: swarm iterations; a run scores particles * iterations
            settings (fewer are paid for: repeated settings are cached).
        c1: cognitive coefficient (pull towards a particle's own best).
        c2: social coefficient (pull towards the swarm's best).
        w: inertia weight.
        velocity_limit: a particle's velocity in each dimension starts, and
            stays, within plus or minus this share of the dimension's range
            (0: pyswarms' own start, drawn from [0, 1) whatever the range,
            with no limit after it).
        seed: the same seed gives the same search.
    """

    particles: int = default("particles")
    iterations: int = default("iterations")
    c1: float = default("c1")
    c2: float = default("c2")
    w: float = default("w")
    velocity_limit: float = default("velocity_limit")
    seed: int = default("seed")

    def __post_init__(self) -> None:
        for name in ("particles", "iterations", "c1", "c2", "w", "velocity_limit", "seed"):
            object.__setattr__(self, name, BY_NAME[name].check(getattr(self, name)))
        # numpy's limit, not a user's bound, so not in the table's bounds
        validate.whole("The seed", self.seed, maximum=MAX_SEED)

    @property
    def evaluations(self) -> int:
        """Settings scored by a full run, not counting the baseline."""
        return self.particles * self.iterations

    @property
    def options(self) -> dict[str, float]:
        """The options dict pyswarms expects."""
        return {"c1": self.c1, "c2": self.c2, "w": self.w}
