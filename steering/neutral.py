"""The shipped neutral text set (`tasks/neutral/neutral.txt`): everyday
sentences on which steering should change little. The capability guard
measures side effects on it, and the "strength" unit is calibrated on it (the
typical size of the hidden states entering each layer over this text)."""

from __future__ import annotations

from pathlib import Path

from steering.errors import InvalidInputError

NEUTRAL_TEXT_PATH = Path(__file__).resolve().parent.parent / "tasks" / "neutral" / "neutral.txt"

# Sentences a strength is calibrated on: an evenly spaced 100 of the 310.
# The mean norm over them differs from the mean over all 310 by well under
# 1 % on SmolLM2 at every layer, at a third of the cost.
CALIBRATION_SENTENCES = 100


def neutral_sentences(
    path: str | Path = NEUTRAL_TEXT_PATH, count: int | None = None
) -> tuple[str, ...]:
    """The shipped neutral sentences (or those of another one-per-line file);
    with `count`, that many spread evenly over the file (its topics are in
    runs, so the first `count` would be mostly weather and cooking)."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise InvalidInputError(f"Cannot read the neutral text file {path}: {exc}") from exc
    sentences = tuple(line.strip() for line in lines if line.strip())
    if not sentences:
        raise InvalidInputError(f"The neutral text file {path} has no sentences.")
    if count is None or count >= len(sentences):
        return sentences
    if count < 1:
        raise InvalidInputError(f"At least one neutral sentence is needed, got {count!r}.")
    return tuple(sentences[i * len(sentences) // count] for i in range(count))
