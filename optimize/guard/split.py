"""Which documents rank settings, which confirm the pick, which are held out,
and whether a gain on them is real.

The best of thirty noisy scores of the same documents is biased upward (the
winner's curse): part of its lead is luck on those documents. So a task's
documents are split, with a seed, three ways:

- the **search** documents rank every setting the search tries;
- the **confirm** documents score only the best few settings (the
  finalists) and the baseline: documents that did not rank them, so a
  finalist's gain there is an honest estimate, and a paired test there
  decides whether anything is recommended;
- the **held-out** documents stay unseen until the end and check the pick
  once (the figure a user is shown, with its interval).

`paired_test` then asks the question a user has: on the same documents, did
the setting fix more answers than it broke, beyond chance?
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
DEFAULT_CONFIRM_FRACTION = float(default("confirm_fraction"))
SEARCH = "search"
CONFIRM = "confirm"
HELDOUT = "heldout"
SIDES = (SEARCH, CONFIRM, HELDOUT)
SIDE_NAMES = {SEARCH: "search", CONFIRM: "confirmation", HELDOUT: "held-out"}


def _share(name: str, value: Any, lowest: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidInputError(f"The {name} must be a number, got {value!r}.")
    if not lowest <= float(value) < 1.0:
        raise InvalidInputError(
            f"The {name} must be from {lowest:g} to below 1, got {value!r}."
        )
    return float(value)


@dataclass(frozen=True)
class DocumentSplit:
    """Each task's documents (its first `limit`, when the run has a limit)
    shuffled with `seed`: the first `round(n * fraction)` are held out (none
    when `fraction` is 0: a held-out task replaces them), then
    `round(rest * confirm)` of the rest confirm the finalists (none when
    `confirm` is 0: results written before confirmation existed), and the
    remaining ones are searched. Every part that exists keeps at least one
    document."""

    fraction: float = DEFAULT_HOLDOUT_FRACTION
    seed: int = 0
    confirm: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "fraction", _share("held-out fraction", self.fraction, 0.0))
        object.__setattr__(self, "confirm", _share("confirmation fraction", self.confirm, 0.0))
        if self.fraction == 0.0 and self.confirm == 0.0:
            raise InvalidInputError(
                "A document split needs a held-out or a confirmation share above 0."
            )
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise InvalidInputError(
                f"The split seed must be a whole number >= 0, got {self.seed!r}."
            )

    @property
    def sides(self) -> tuple[str, ...]:
        """The parts this split makes, in order."""
        return tuple(
            side
            for side, share in ((SEARCH, 1.0), (CONFIRM, self.confirm), (HELDOUT, self.fraction))
            if share > 0
        )

    def counts(self, count: int) -> dict[str, int]:
        """How many of `count` documents each part gets (InvalidInputError
        when a part would be empty)."""
        sides = self.sides
        if count < len(sides):
            raise InvalidInputError(
                f"A task with {count} document(s) cannot be split into "
                f"{' and '.join(SIDE_NAMES[s] for s in sides)} documents: use more documents "
                "or lower the held-out and confirmation shares."
            )
        held = min(count - len(sides) + 1, max(1, round(count * self.fraction))) if (
            self.fraction > 0
        ) else 0
        rest = count - held
        confirm = min(rest - 1, max(1, round(rest * self.confirm))) if self.confirm > 0 else 0
        return {SEARCH: rest - confirm, CONFIRM: confirm, HELDOUT: held}

    def parts(self, count: int) -> dict[str, tuple[int, ...]]:
        """Positions 0..count-1 of a task's documents in each part, ascending."""
        sizes = self.counts(count)
        order = np.random.RandomState(self.seed).permutation(count)
        held, confirm = sizes[HELDOUT], sizes[CONFIRM]
        return {
            HELDOUT: tuple(sorted(int(i) for i in order[:held])),
            CONFIRM: tuple(sorted(int(i) for i in order[held : held + confirm])),
            SEARCH: tuple(sorted(int(i) for i in order[held + confirm :])),
        }

    def to_dict(self) -> dict[str, Any]:
        return {"fraction": self.fraction, "seed": self.seed, "confirm": self.confirm}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DocumentSplit:
        return cls(
            fraction=float(data["fraction"]),
            seed=int(data["seed"]),
            confirm=float(data.get("confirm", 0.0)),
        )


@dataclass(frozen=True)
class PairedTest:
    """Baseline and setting scored on the same documents.

    `fixed`: documents the baseline got wrong and the setting right; `broken`:
    the reverse. `p_value` is the exact two-sided sign test (McNemar's exact
    test) on those discordant documents: the chance of a split at least this
    lopsided if fixing and breaking were equally likely. `gain_points` and its
    `stderr_points` are the mean per-document difference and its standard
    error, in points (x100). For 0/1 values (accuracy) the standard error is
    Agresti and Min's (2005): half a document added to each of the four cells
    of the paired table, so a setting that changed no answer among 29
    documents gets an interval of about +-6 points, not a certain [0, 0]."""

    documents: int
    fixed: int
    broken: int
    p_value: float
    gain_points: float
    stderr_points: float

    def interval(self, level: float = 0.95) -> tuple[float, float]:
        """The gain's confidence interval in points (normal approximation to
        the mean per-document difference; NaN bounds with one document)."""
        z = _normal_quantile(0.5 + level / 2.0)
        half = z * self.stderr_points
        return (self.gain_points - half, self.gain_points + half)

    @property
    def p_gain(self) -> float:
        """The one-sided sign test: the chance of at least this many fixed
        documents among the changed ones if fixing and breaking were equally
        likely. Small only for a gain: the test of "does it help?"."""
        return gain_p(self.fixed, self.broken)

    def confirms(self, significance: float) -> bool:
        """Whether this is a gain at `significance` (the one-sided test)."""
        return self.fixed > self.broken and self.p_gain < significance

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


def gain_p(fixed: int, broken: int) -> float:
    """Exact one-sided binomial (sign) test: P(X >= fixed) for X ~ B(fixed + broken, 1/2)."""
    n = fixed + broken
    if n == 0:
        return 1.0
    return sum(math.comb(n, i) for i in range(fixed, n + 1)) / 2.0**n


def sign_test_p(fixed: int, broken: int) -> float:
    """Exact two-sided binomial (sign) test of `fixed` vs `broken` at p = 1/2."""
    n = fixed + broken
    if n == 0:
        return 1.0
    k = min(fixed, broken)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2.0**n
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
    if _zero_one(baseline) and _zero_one(setting):
        stderr = _matched_proportions_stderr(fixed, broken, n) * 100.0
    else:
        stderr = float(diffs.std(ddof=1) / math.sqrt(n)) * 100.0 if n > 1 else math.nan
    return PairedTest(
        documents=n,
        fixed=fixed,
        broken=broken,
        p_value=sign_test_p(fixed, broken),
        gain_points=float(diffs.mean()) * 100.0,
        stderr_points=stderr,
    )


def _zero_one(values: Sequence[float]) -> bool:
    return all(v in (0.0, 1.0) for v in values)


def _matched_proportions_stderr(fixed: int, broken: int, documents: int) -> float:
    """The standard error of a difference of matched proportions with half a
    document added to each cell (Agresti and Min, 2005): close to the plain
    one when answers change, and never 0, so the interval of a setting that
    changed nothing on a few documents still says how little they show."""
    b, c, n = fixed + 0.5, broken + 0.5, documents + 2.0
    return math.sqrt(max(b + c - (b - c) ** 2 / n, 0.0)) / n


def _normal_quantile(p: float) -> float:
    """The standard normal quantile."""
    from statistics import NormalDist

    return NormalDist().inv_cdf(p)


# What share of documents a steering setting changes the answer of (fixed or
# broken), for planning before anything is scored; the plan line says it
# assumes this. docs/verdict.md gives the share measured on the shipped tasks.
PLANNING_DISCORDANCE = 0.3


def smallest_confirmable_gain(
    documents: int,
    significance: float = 0.05,
    discordance: float = PLANNING_DISCORDANCE,
    one_sided: bool = False,
) -> float:
    """The smallest gain, in points, that a paired sign test on `documents`
    documents can confirm at `significance`, when about `discordance` of them
    change their answer: the fewest more-fixed-than-broken documents whose
    sign test passes, over the documents. When even all changed documents
    fixed would not pass, more of them must change: the gain is then that of
    the fewest fixed documents that pass with none broken (100 points when
    the documents are too few for any gain to pass). `one_sided`: the test
    of a gain (`gain_p`) rather than of any difference."""
    if documents < 1:
        return 100.0
    test = gain_p if one_sided else sign_test_p
    changed = max(1, round(discordance * documents))
    for fixed in range((changed + 1) // 2, changed + 1):
        if test(fixed, changed - fixed) < significance:
            return min(100.0, 100.0 * (2 * fixed - changed) / documents)
    for fixed in range(changed + 1, documents + 1):
        if test(fixed, 0) < significance:
            return min(100.0, 100.0 * fixed / documents)
    return 100.0
