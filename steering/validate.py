"""The number checks every validated value goes through: whole numbers, finite
numbers and their bounds, with messages a UI shows verbatim.

One set, so that a layer, a limit, an alpha or a seed is refused with the
same wording wherever it is typed (CLI, form, saved settings, preset). Only
the standard library: `python -m optimize --help` reads the settings table
without importing torch.

`name` is how the value is called in the message ("The lowest layer",
"Limit"). A bound of None is no bound. Both bounds given read "between A and
B"; one reads "A or more" or "at most B".
"""

from __future__ import annotations

import math

from steering.errors import InvalidInputError


def typed(value: object) -> str:
    """What was typed, for a message: a pasted page is cut, not echoed whole."""
    text = repr(value)
    return text if len(text) <= 80 else text[:80] + "…"


def _show(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"


def _bounds(name: str, value: float, minimum: float | None, maximum: float | None) -> None:
    if minimum is not None and maximum is not None:
        if value < minimum or value > maximum:
            raise InvalidInputError(
                f"{name} must be between {_show(minimum)} and {_show(maximum)}, "
                f"got {_show(value)}."
            )
    elif minimum is not None:
        if value < minimum:
            raise InvalidInputError(
                f"{name} must be {_show(minimum)} or more, got {_show(value)}."
            )
    elif maximum is not None and value > maximum:
        raise InvalidInputError(f"{name} must be at most {_show(maximum)}, got {_show(value)}.")


def whole(
    name: str, value: object, minimum: float | None = None, maximum: float | None = None
) -> int:
    """`value` as an int within the bounds. A float with no fraction counts
    (gr.Number and JSON give 3.0); True/False, text and None do not."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidInputError(f"{name} must be a whole number, got {typed(value)}.")
    _bounds(name, value, minimum, maximum)
    return value


def number(
    name: str, value: object, minimum: float | None = None, maximum: float | None = None
) -> float:
    """`value` as a finite float within the bounds (text such as "1.5" is read;
    True/False, NaN and infinities are refused). With only a minimum the
    message says "a finite number of A or more", as the PSO options do."""
    if isinstance(value, bool):
        raise InvalidInputError(f"{name} must be a number, got {typed(value)}.")
    try:
        result = float(value)  # type: ignore[arg-type]  # float() refusing it is the check
    except (TypeError, ValueError):
        raise InvalidInputError(f"{name} must be a number, got {typed(value)}.") from None
    if minimum is not None and maximum is None:
        if not math.isfinite(result) or result < minimum:
            raise InvalidInputError(
                f"{name} must be a finite number of {minimum:g} or more, got {typed(value)}."
            )
        return result
    if not math.isfinite(result):
        raise InvalidInputError(f"{name} must be a finite number, got {typed(value)}.")
    _bounds(name, result, minimum, maximum)
    return result


def given(name: str, value: object) -> object:
    """`value`, unless a form field was left empty (None)."""
    if value is None:
        raise InvalidInputError(f"Enter a value for {name}.")
    return value
