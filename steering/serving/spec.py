"""The `steering` field of an API request, checked before anything runs.

    "steering": null or absent   the app's active vectors (what the Steering tab shows)
    "steering": false            no steering at all
    "steering": {"vectors": [    these vectors instead, each chosen by
        {"name": "joy", "layer": 12, "strength": 0.3},           a saved file's name
        {"id": "3f2a9c0d4e1b", "alpha": 4},                      or a vector's id
    ]}

Per vector: `layer` (the state ENTERING decoder layer L; the vector is
re-extracted there, as the Steering tab does when a layer changes) and one of
`alpha` (H + alpha * V), `strength` (the added vector's norm over the layer's
typical state norm) or EasySteer's `scale` (its multiplier of the stored
direction: our alpha). Without them the vector keeps its saved layer and alpha.

EasySteer's field names are taken where they mean the same here: `vectors`,
`scale`, `source` (a saved file, by name only: never a path), `steering:
false`, and `algorithm: "direct"`, `normalize: false`, `params: {}`,
`conflict: "sequential"` and an `apply` clause covering every prompt and
generated token, which is what steerswarm always does. The others are refused
with a message that says what to send instead (see docs/serving.md): its
`layers` count decoder outputs (its layer i is our layer i + 1), its `name`
is a log label (here it chooses a vector), its default `scale` is 1 (here a
vector keeps its saved alpha), and its default conflict policy keeps only the
first vector on a position (here vectors on one layer always add up).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from steering.errors import RequestFieldError
from steering.limits import MAX_ABS_ALPHA, MAX_REQUEST_STRENGTH, MAX_VECTORS_PER_REQUEST
from steering.validate import typed

DEFAULT = "default"  # the app's active vectors
NONE = "none"  # unsteered
CHOSEN = "chosen"  # the vectors the request names

PARAM = "steering"
# A vector's id is 12 hex digits; a name is a saved file's stem. Both are
# looked up among listed entries only, so these caps only keep messages short.
MAX_NAME_CHARS = 200

_SELECTORS = ("id", "name", "source")
_AMOUNTS = ("alpha", "strength", "scale")
# EasySteer's fields that are accepted only with the value that means what
# steerswarm always does.
_ALWAYS = {
    "algorithm": ("direct",),
    "normalize": (False,),
}
_VECTOR_KEYS = (*_SELECTORS, "layer", *_AMOUNTS, *_ALWAYS, "apply", "params", "layers")
_SPEC_KEYS = ("vectors", "conflict", "debug")
# EasySteer's ApplySpec phases; steerswarm steers every position of both.
_PHASES = {"prompt", "generation"}


@dataclass(frozen=True)
class VectorChoice:
    """One entry of `steering.vectors`: which vector (`vector_id` or `name`),
    and optionally where (`layer`) and how much (`alpha` or `strength`).
    `param` is where it stood in the request, for error messages."""

    vector_id: str | None = None
    name: str | None = None
    layer: int | None = None
    alpha: float | None = None
    strength: float | None = None
    param: str = f"{PARAM}.vectors[0]"

    def __post_init__(self) -> None:
        if (self.vector_id is None) == (self.name is None):
            raise RequestFieldError(
                f"{self.param} must choose a vector by exactly one of id or name.", self.param
            )
        if self.alpha is not None and self.strength is not None:
            raise RequestFieldError(
                f"{self.param} gives both an alpha and a strength; give one.", self.param
            )


@dataclass(frozen=True)
class SteeringChoice:
    """What a request steers with: the app's active vectors (`DEFAULT`),
    nothing (`NONE`), or the vectors it names (`CHOSEN`)."""

    mode: str = DEFAULT
    vectors: tuple[VectorChoice, ...] = ()

    def __post_init__(self) -> None:
        if self.mode not in (DEFAULT, NONE, CHOSEN):
            raise ValueError(f"unknown steering mode {self.mode!r}")
        if (self.mode == CHOSEN) != bool(self.vectors):
            raise ValueError("only chosen steering lists vectors, and it lists at least one")

    def describe(self) -> str:
        """For logs and status lines."""
        if self.mode == DEFAULT:
            return "the app's active vectors"
        if self.mode == NONE:
            return "no steering"
        return f"{len(self.vectors)} chosen vector(s)"


def parse_steering(value: Any) -> SteeringChoice:
    """The request's `steering` field (the decoded JSON value) as a
    SteeringChoice.

    Raises:
        RequestFieldError: anything malformed or out of range; its `param`
            names the field, e.g. "steering.vectors[0].strength".
    """
    if value is None:
        return SteeringChoice(DEFAULT)
    if value is False:
        return SteeringChoice(NONE)
    if not isinstance(value, Mapping):
        raise RequestFieldError(
            f"{PARAM} must be an object with a vectors list, false (no steering) or null "
            f"(the app's active vectors), got {typed(value)}.",
            PARAM,
        )
    _only_keys(value, _SPEC_KEYS, PARAM)
    conflict = value.get("conflict", "sequential")
    if conflict != "sequential":
        raise RequestFieldError(
            f"{PARAM}.conflict must be 'sequential' (vectors at one layer add up, the only "
            f"rule steerswarm has), got {typed(conflict)}.",
            f"{PARAM}.conflict",
        )
    if not isinstance(value.get("debug", False), bool):
        raise RequestFieldError(f"{PARAM}.debug must be true or false.", f"{PARAM}.debug")
    vectors = value.get("vectors")
    if not isinstance(vectors, list):
        raise RequestFieldError(
            f"{PARAM}.vectors must be a list of vectors, got {typed(vectors)}.", f"{PARAM}.vectors"
        )
    if len(vectors) > MAX_VECTORS_PER_REQUEST:
        raise RequestFieldError(
            f"{PARAM}.vectors lists {len(vectors)} vectors; a request takes at most "
            f"{MAX_VECTORS_PER_REQUEST}.",
            f"{PARAM}.vectors",
        )
    if not vectors:
        return SteeringChoice(NONE)
    choices = tuple(_vector(entry, f"{PARAM}.vectors[{i}]") for i, entry in enumerate(vectors))
    return SteeringChoice(CHOSEN, choices)


def _vector(entry: Any, param: str) -> VectorChoice:
    if not isinstance(entry, Mapping):
        raise RequestFieldError(f"{param} must be an object, got {typed(entry)}.", param)
    _only_keys(entry, _VECTOR_KEYS, param)
    if "layers" in entry:
        raise RequestFieldError(
            f"{param}.layers is EasySteer's field (the outputs of decoder layers i, several at "
            "once); steerswarm takes one `layer` per vector: the state entering decoder layer "
            "L, which is EasySteer's layer L - 1. To steer several layers, list the vector once "
            "per layer.",
            f"{param}.layers",
        )
    for key, allowed in _ALWAYS.items():
        if key in entry and entry[key] not in allowed:
            hint = " Use strength for a length relative to the layer." if key == "normalize" else ""
            raise RequestFieldError(
                f"{param}.{key} must be {' or '.join(map(repr, allowed))}: steerswarm adds "
                f"H + alpha * V, got {typed(entry[key])}.{hint}",
                f"{param}.{key}",
            )
    if entry.get("params") not in (None, {}):
        raise RequestFieldError(
            f"{param}.params must be empty: the direct algorithm takes none.", f"{param}.params"
        )
    if "apply" in entry:
        _check_apply(entry["apply"], f"{param}.apply")
    given = [key for key in _SELECTORS if key in entry]
    if len(given) != 1:
        raise RequestFieldError(
            f"{param} must choose its vector by exactly one of id, name or source (a saved "
            f"file's name), got {', '.join(given) or 'none'}.",
            param,
        )
    selector = given[0]
    text = entry[selector]
    if not isinstance(text, str) or not text.strip() or len(text) > MAX_NAME_CHARS:
        raise RequestFieldError(
            f"{param}.{selector} must be a non-empty text of at most {MAX_NAME_CHARS} "
            f"characters, got {typed(text)}.",
            f"{param}.{selector}",
        )
    amounts = [key for key in _AMOUNTS if key in entry]
    if len(amounts) > 1:
        raise RequestFieldError(
            f"{param} gives {' and '.join(amounts)}; give at most one of alpha, strength and "
            "scale (EasySteer's name for alpha).",
            param,
        )
    alpha = strength = None
    if amounts:
        key = amounts[0]
        bound = MAX_REQUEST_STRENGTH if key == "strength" else MAX_ABS_ALPHA
        amount = _number(entry[key], f"{param}.{key}", bound)
        if key == "strength":
            strength = amount
        else:
            alpha = amount
    layer = None
    if "layer" in entry:
        layer = _whole(entry["layer"], f"{param}.layer")
    return VectorChoice(
        vector_id=text.strip() if selector == "id" else None,
        name=None if selector == "id" else text.strip(),
        layer=layer,
        alpha=alpha,
        strength=strength,
        param=param,
    )


def _check_apply(apply: Any, param: str) -> None:
    """EasySteer's `apply` clause, accepted when it covers every prompt and
    generated token: {"phases": ["prompt", "generation"]} with no selectors,
    or the older {"prompt": "all", "generation": "all"}."""
    everything = (
        isinstance(apply, Mapping)
        and (
            (set(apply) == {"phases"} and isinstance(apply["phases"], list)
             and set(apply["phases"]) == _PHASES)
            or dict(apply) == {"prompt": "all", "generation": "all"}
        )
    )
    if not everything:
        raise RequestFieldError(
            f"{param} must cover every prompt and generated token ({{\"phases\": [\"prompt\", "
            f"\"generation\"]}}), got {typed(apply)}: steerswarm steers every position.",
            param,
        )


def _only_keys(entry: Mapping[str, Any], allowed: tuple[str, ...], param: str) -> None:
    unknown = [str(key) for key in entry if key not in allowed]
    if unknown:
        raise RequestFieldError(
            f"{param} has unknown field(s) {', '.join(map(repr, unknown[:5]))}; it takes "
            f"{', '.join(allowed)}.",
            f"{param}.{unknown[0]}",
        )


def _number(value: Any, param: str, bound: float) -> float:
    """A JSON number (not a text, not true/false) within +-bound."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RequestFieldError(f"{param} must be a number, got {typed(value)}.", param)
    number = float(value)
    if not math.isfinite(number) or abs(number) > bound:
        raise RequestFieldError(
            f"{param} must be a finite number between {-bound:g} and {bound:g}, "
            f"got {typed(value)}.",
            param,
        )
    return number


def _whole(value: Any, param: str) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise RequestFieldError(f"{param} must be a whole number >= 0, got {typed(value)}.", param)
    return value
