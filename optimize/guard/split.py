"""Held-out documents by default, and whether a gain on them is real.

A search that scores every document of its task reports a best setting that
is partly a lucky fit to those documents. `DocumentSplit` sets a seeded share
of each task's documents aside: the search never scores them; after it, the
baseline and the recommended setting are scored there once. `paired_test`
then asks the question a user has: on the same held-out documents, did the
setting fix more answers than it broke, beyond chance?
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from optimize.config.table import default
from steering.errors import InvalidInputError

DEFAULT_HOLDOUT_FRACTION = float(default("holdout_fraction"))
SEARCH = "search"
HELDOUT = "heldout"


@dataclass(frozen=True)
class DocumentSplit:
    """Each task's documents (its first `limit`, when the run has a limit)
    shuffled with `seed`; the first `round(n * fraction)` are held out, the
    rest are searched. Both sides keep at least one document."""

    fraction: float = DEFAULT_HOLDOUT_FRACTION
    seed: int = 0

    def __post_init__(self) -> None:
        fraction = self.fraction
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)):
            raise InvalidInputError(f"The held-out fraction must be a number, got {fraction!r}.")
        if not 0.0 < float(fraction) < 1.0:
            raise InvalidInputError(
                f"The held-out fraction must be above 0 and below 1 (0 turns the split off), "
                f"got {fraction!r}."
            )
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise InvalidInputError(f"The split seed must be a whole number >= 0, got {self.seed!r}.")
        object.__setattr__(self, "fraction", float(fraction))

    def parts(self, count: int) -> dict[str, tuple[int, ...]]:
        """Positions 0..count-1 of a task's documents on each side, ascending."""
        if count < 2:
            raise InvalidInputError(
                f"A task with {count} document(s) cannot be split into searched and "
                "held-out documents: use more documents or a held-out fraction of 0."
            )
        order = np.random.RandomState(self.seed).permutation(count)
        held = min(count - 1, max(1, round(count * self.fraction)))
        return {
            HELDOUT: tuple(sorted(int(i) for i in order[:held])),
            SEARCH: tuple(sorted(int(i) for i in order[held:])),
        }

    def to_dict(self) -> dict[str, Any]:
        return {"fraction": self.fraction, "seed": self.seed}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DocumentSplit:
        return cls(fraction=float(data["fraction"]), seed=int(data["seed"]))


@dataclass(frozen=True)
class PairedTest:
    """Baseline and setting scored on the same documents.

    `fixed`: documents the baseline got wrong and the setting right; `broken`:
    the reverse. `p_value` is the exact two-sided sign test (McNemar's exact
    test) on those discordant documents: the chance of a split at least this
    lopsided if fixing and breaking were equally likely. `gain_points` and its
    `stderr_points` are the mean per-document difference and its standard
    error, in points (x100)."""

    documents: int
    fixed: int
    broken: int
    p_value: float
    gain_points: float
    stderr_points: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "documents": self.documents,
            "fixed": self.fixed,
            "broken": self.broken,
            "p_value": self.p_value,
            "gain_points": self.gain_points,
            "stderr_points": None if math.isnan(self.stderr_points) else self.stderr_points,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PairedTest:
        stderr = data.get("stderr_points")
        return cls(
            documents=int(data["documents"]),
            fixed=int(data["fixed"]),
            broken=int(data["broken"]),
            p_value=float(data["p_value"]),
            gain_points=float(data["gain_points"]),
            stderr_points=math.nan if stderr is None else float(stderr),
        )


def sign_test_p(fixed: int, broken: int) -> float:
    """Exact two-sided binomial (sign) test of `fixed` vs `broken` at p = 1/2."""
    n = fixed + broken
    if n == 0:
        return 1.0
    k = min(fixed, broken)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2.0 * tail)


def paired_test(
    baseline: Sequence[float], setting: Sequence[float], higher_is_better: bool = True
) -> PairedTest:
    """Compare per-document metric values of the baseline and a setting.

    A document counts as fixed (broken) when the setting's value is better
    (worse) than the baseline's; for 0/1 accuracy that is wrong->right
    (right->wrong)."""
    if len(baseline) != len(setting) or not baseline:
        raise ValueError("paired_test needs the same documents, at least one, on both sides")
    diffs = np.asarray(setting, dtype=float) - np.asarray(baseline, dtype=float)
    if not higher_is_better:
        diffs = -diffs
    fixed, broken = int((diffs > 0).sum()), int((diffs < 0).sum())
    n = len(diffs)
    stderr = float(diffs.std(ddof=1) / math.sqrt(n)) * 100.0 if n > 1 else math.nan
    return PairedTest(
        documents=n,
        fixed=fixed,
        broken=broken,
        p_value=sign_test_p(fixed, broken),
        gain_points=float(diffs.mean()) * 100.0,
        stderr_points=stderr,
    )
