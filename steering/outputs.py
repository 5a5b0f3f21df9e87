"""Where output files go: checking a path before the work, and writing where
one can when the asked path fails.

A command that loads a model and computes for minutes must not find out at
the end that its output cannot be written: the path is checked first (a
folder's name, a missing folder, a folder under a regular file, one that
refuses a new file), with a one-line message. A write can still fail later
(the disk fills up meanwhile): then the work goes to a fallback file and the
message says where, so finished work is never thrown away.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from steering.errors import InvalidInputError


def default_data_dir() -> Path:
    """The standalone app's and the CLIs' data folder: $XDG_DATA_HOME/steerswarm,
    else ~/.local/share/steerswarm."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "steerswarm"


def reason(exc: OSError) -> str:
    """An OSError as a short reason ("No space left on device")."""
    return exc.strerror or str(exc) or type(exc).__name__


def check_output_path(path: str | Path, flag: str) -> Path:
    """`path` if a file can be written there, else InvalidInputError naming
    `flag` (e.g. "--out") and what is wrong. Creates and removes a probe file
    in the folder: permission bits say nothing to root or about a read-only
    filesystem, an actual create does."""
    path = Path(path)
    if path.is_dir():
        raise InvalidInputError(f"{flag} names a folder, not a file: {path}")
    folder = path.parent
    if folder.exists() and not folder.is_dir():
        raise InvalidInputError(f"{flag}: {folder} is a file, not a folder.")
    if not folder.is_dir():
        raise InvalidInputError(f"The folder of {flag} does not exist: {folder}")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise InvalidInputError(
            f"Cannot write into the folder of {flag} ({folder}): {reason(exc)}."
        ) from None
    return path


def write_with_fallback(
    write: Callable[[Path], Path], path: Path, fallback_dir: Path
) -> tuple[Path, str]:
    """`write(path)`; if that raises OSError, `write` into `fallback_dir`
    (made if need be), then into the temporary folder. Returns the path
    written and, when it is not `path`, a one-line note saying why and where.
    Raises the last OSError when nothing could be written."""
    try:
        return write(path), ""
    except OSError as exc:
        first = exc
    last: OSError = first
    # a name of its own, so an earlier rescued file is never overwritten
    name = f"{path.stem}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}{path.suffix}"
    for folder in (fallback_dir, Path(tempfile.gettempdir())):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            saved = write(folder / name)
        except OSError as exc:
            last = exc
            continue
        return saved, f"Could not write {path} ({reason(first)}); saved to {saved} instead."
    raise last


def atomic_write(path: Path, data: bytes) -> Path:
    """Write `data` to `path` atomically: a temporary file in the same folder,
    flushed to disk, then renamed over `path`. A failure (full disk, read-only
    folder, crash) leaves any old file intact and no temporary file behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
