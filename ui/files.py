"""File names the user types and files the user uploads, for every tab."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
_KNOWN_SUFFIXES = (".safetensors", ".gguf")
MAX_NAME_CHARS = 120


def plain_file_name(name: str | None, suffix: str) -> str:
    """A plain file name (no folders, no odd characters) ending in `suffix`;
    a known vector file suffix the user typed is replaced, so
    "love.safetensors" exports as "love.gguf"."""
    name = Path((name or "").strip()).name
    for known in _KNOWN_SUFFIXES:
        name = name.removesuffix(known)
    stem = _SAFE_NAME.sub("-", name).strip("-.")
    if not stem:
        raise ValueError(f"Give the file a name, e.g. steering-vectors{suffix}.")
    # the filesystem's limit is 255 bytes, with the temporary name's parts
    if len(stem) > MAX_NAME_CHARS:
        raise ValueError(
            f"A file name takes at most {MAX_NAME_CHARS} characters; this one has {len(stem):,}."
        )
    return stem + suffix


def upload_path(file: Any) -> str | None:
    """The local path of a gr.File value (a path string, or an object with .name/.path)."""
    if file is None or file == "":
        return None
    if isinstance(file, (str, Path)):
        return str(file)
    for attr in ("path", "name"):
        value = getattr(file, attr, None)
        if isinstance(value, str):
            return value
    if isinstance(file, dict):
        return file.get("path") or file.get("name")
    return None
