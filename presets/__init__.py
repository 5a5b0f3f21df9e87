"""Ready-made examples: concept and contrast prompts with the settings that
reproduce a documented result (presets/<name>/preset.json, docs/demo.md).

A preset is plain data, so the command line, the UI and the tests read the
same numbers from one place.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optimize.config.table import PRESET, check_preset, fields as run_fields
from steering.capture import split_prompts
from steering.errors import InvalidInputError

PRESETS_DIR = Path(__file__).resolve().parent

# The optimize settings a preset must give: the PRESET rows of the run
# settings table (named as the CLI's options, with underscores), which is
# what makes the documented run reproducible. The table (standard library
# only) checks each value's kind and bounds.
OPTIMIZE_KEYS = tuple(f.name for f in run_fields(PRESET))

# The joy-minus-grief example of docs/vectors.md: the measurement script
# (scripts/vectors_table.py) and the browser tests type the same sentences,
# so the figures and the screenshots describe one vector.
JOY = (
    "I feel so joyful and happy today!",
    "What a wonderful, delightful surprise, I am thrilled.",
    "Laughing with friends in the sunshine makes me glad.",
    "This is the best day of my life, everything is bright.",
)
GRIEF = (
    "I feel so sad and heartbroken today.",
    "What a terrible, painful loss, I am devastated.",
    "Crying alone in the dark makes me miserable.",
    "This is the worst day of my life, everything is grey.",
)


@dataclass(frozen=True)
class Preset:
    """A concept to capture and how to search its layer and alpha.

    `layer` and `alpha` are where the vector is captured (the search
    recaptures it at each layer it tries); `optimize` holds the search
    settings, keyed as in OPTIMIZE_KEYS and checked against
    optimize/config/table.py; its tasks are in the shipped tasks/
    folder.
    """

    name: str
    title: str
    model: str
    concept: tuple[str, ...]
    contrast: tuple[str, ...]
    layer: int
    alpha: float
    optimize: dict[str, Any]
    folder: Path

    @property
    def concept_text(self) -> str:
        """The concept prompts, one per line (as the UI's text box takes them)."""
        return "\n".join(self.concept)

    @property
    def contrast_text(self) -> str:
        return "\n".join(self.contrast)


def _read(folder: Path, name: str) -> tuple[str, ...]:
    try:
        prompts = split_prompts((folder / name).read_text(encoding="utf-8"))
    except OSError as exc:
        raise InvalidInputError(f"Cannot read the preset's prompts {folder / name}: {exc}") from exc
    if not prompts:
        raise InvalidInputError(f"The preset's prompt file {folder / name} is empty.")
    return tuple(prompts)


def load_preset(name: str = "sentiment", presets_dir: Path = PRESETS_DIR) -> Preset:
    """The preset in `presets_dir/name/preset.json`.

    Raises:
        InvalidInputError: no such preset, or an incomplete one.
    """
    folder = Path(presets_dir) / name
    path = folder / "preset.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidInputError(f"There is no preset {name!r} in {presets_dir}.") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInputError(f"The preset {path} is not readable: {exc}") from exc
    try:
        optimize = check_preset(data["optimize"])
        return Preset(
            name=str(data["name"]),
            title=str(data["title"]),
            model=str(data["model"]),
            concept=_read(folder, data["concept"]),
            contrast=_read(folder, data["contrast"]),
            layer=int(data["layer"]),
            alpha=float(data["alpha"]),
            optimize=optimize,
            folder=folder,
        )
    except InvalidInputError as exc:
        raise InvalidInputError(f"The preset {path} is not valid: {exc}") from exc
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidInputError(f"The preset {path} is incomplete: {exc}") from exc
