"""What to score with (FitnessConfig) and how to search (PsoConfig).

Both are validated when built, with messages a UI can show verbatim.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from steering.errors import InvalidInputError

# np.random.seed accepts 0 <= seed < 2**32.
MAX_SEED = 2**32 - 1


def _whole(name: str, value: object, minimum: int) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidInputError(f"{name} must be a whole number, got {value!r}.")
    if value < minimum:
        raise InvalidInputError(f"{name} must be {minimum} or more, got {value}.")
    return value


def _coefficient(name: str, value: object) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InvalidInputError(f"{name} must be a number, got {value!r}.") from None
    if isinstance(value, bool) or not math.isfinite(number) or number < 0:
        raise InvalidInputError(f"{name} must be a finite number of 0 or more, got {value!r}.")
    return number


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
    metric: str = "acc"
    limit: int | None = 20
    batch_size: int = 8
    num_fewshot: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.task, str) or not self.task.strip():
            raise InvalidInputError(f"Enter an lm-eval task name, got {self.task!r}.")
        object.__setattr__(self, "task", self.task.strip())
        if self.include_path is not None:
            if not isinstance(self.include_path, (str, Path)) or not str(self.include_path).strip():
                raise InvalidInputError(
                    f"The task folder must be a path, got {self.include_path!r}."
                )
            folder = Path(str(self.include_path).strip()).expanduser()
            if not folder.is_dir():
                raise InvalidInputError(f"Task folder not found: {folder}")
            object.__setattr__(self, "include_path", str(folder))
        if not isinstance(self.metric, str) or not self.metric.strip():
            raise InvalidInputError(f"Enter a metric name such as 'acc', got {self.metric!r}.")
        object.__setattr__(self, "metric", self.metric.strip())
        if self.limit is not None:
            object.__setattr__(self, "limit", _whole("The limit", self.limit, 1))
        object.__setattr__(self, "batch_size", _whole("The batch size", self.batch_size, 1))
        object.__setattr__(
            self, "num_fewshot", _whole("The number of few-shot examples", self.num_fewshot, 0)
        )


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
        seed: the same seed gives the same search.
    """

    particles: int = 4
    iterations: int = 3
    c1: float = 0.5
    c2: float = 0.3
    w: float = 0.9
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "particles", _whole("The number of particles", self.particles, 1))
        object.__setattr__(
            self, "iterations", _whole("The number of iterations", self.iterations, 1)
        )
        object.__setattr__(self, "c1", _coefficient("c1", self.c1))
        object.__setattr__(self, "c2", _coefficient("c2", self.c2))
        object.__setattr__(self, "w", _coefficient("w", self.w))
        seed = _whole("The seed", self.seed, 0)
        if seed > MAX_SEED:
            raise InvalidInputError(f"The seed must be at most {MAX_SEED}, got {seed}.")
        object.__setattr__(self, "seed", seed)

    @property
    def evaluations(self) -> int:
        """Settings scored by a full run, not counting the baseline."""
        return self.particles * self.iterations

    @property
    def options(self) -> dict[str, float]:
        """The options dict pyswarms expects."""
        return {"c1": self.c1, "c2": self.c2, "w": self.w}
