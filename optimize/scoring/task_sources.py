"""Which lm-eval task sources a page may use: the ones the operator allowed.

lm-eval runs Python from a task folder: a task YAML may say
`process_docs: !function utils.process_docs`, and loading that task imports
`utils.py` beside it. So a task folder is code. When the app is served on a
network, whoever can open the page must not be able to point lm-eval at a
folder of their choosing (the app's upload folder holds files any visitor
sent; `/` makes lm-eval index the whole filesystem). The pages therefore only
offer, and the library only accepts:

- lm-eval's own registered tasks, by name (its installed package's code);
- the task folders the operator allowed when starting the app: steerswarm's
  shipped `tasks/` folder, one user task folder under the app's data folder,
  and any folder given with `--allow-task-folder` (standalone) or the webui
  setting `steerswarm-allowed_task_folders`.

Paths are compared after resolving symlinks and `..`. The upload folder (and
the system temporary folder that holds it) is never allowed, even if the
operator names it. The command line (`python -m optimize --include-path`)
runs as the machine's own user and does not go through this module.
Standard library only: `extension.py --help` checks folders before torch loads.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from steering.errors import InvalidInputError

SHIPPED_TASKS = Path(__file__).resolve().parents[2] / "tasks"

# The choice that means "lm-eval's registered tasks" (no task folder).
REGISTERED = ""


class TaskSourceError(InvalidInputError):
    """A task folder that is not one the operator allowed, or that may never be allowed."""


def upload_folder() -> Path:
    """Gradio's upload folder, where every file a visitor sends is kept.

    Gradio 4 and 6 both use GRADIO_TEMP_DIR, else `<system temp>/gradio`;
    read at each call so a changed environment is honoured.
    """
    folder = os.environ.get("GRADIO_TEMP_DIR") or str(Path(tempfile.gettempdir()) / "gradio")
    return Path(folder).resolve()


def _within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def forbidden_reason(folder: Path) -> str | None:
    """Why a resolved folder may never be a task folder, or None.

    Refused: the filesystem root, the system temporary folder or any folder
    containing it, and the upload folder with anything inside or above it.
    """
    uploads = upload_folder()
    temp = Path(tempfile.gettempdir()).resolve()
    if folder == Path(folder.anchor):
        return "the filesystem root would make lm-eval index every file on the machine"
    if _within(folder, uploads) or _within(uploads, folder):
        return "it holds (or is) the upload folder, where any visitor's files are kept"
    if _within(temp, folder):
        return "it is (or holds) the system temporary folder, which anyone can write to"
    return None


def _resolve(folder: str | os.PathLike[str]) -> Path:
    text = str(folder).strip()
    if not text or "\x00" in text:
        raise TaskSourceError(f"The task folder must be a path, got {str(folder)!r}.")
    try:
        return Path(text).expanduser().resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop, a name too long
        raise TaskSourceError(f"The task folder {text!r} cannot be resolved: {exc}.") from None


@dataclass(frozen=True)
class AllowedTaskSources:
    """The task sources a page may offer and use.

    Attributes:
        folders: allowed task folders, resolved (missing ones are kept but not
            offered until they exist).
        registered: lm-eval's registered tasks may be used by name.

    Raises:
        TaskSourceError: a folder that may never be allowed (see
            `forbidden_reason`), named with the reason.
    """

    folders: tuple[Path, ...] = (SHIPPED_TASKS,)
    registered: bool = True

    def __post_init__(self) -> None:
        resolved: list[Path] = []
        for folder in self.folders:
            path = _resolve(folder)
            why = forbidden_reason(path)
            if why is not None:
                raise TaskSourceError(f"{path} cannot be an allowed task folder: {why}.")
            if path not in resolved:
                resolved.append(path)
        object.__setattr__(self, "folders", tuple(resolved))
        object.__setattr__(self, "registered", bool(self.registered))

    @classmethod
    def default(
        cls, data_dir: str | os.PathLike[str] | None = None, extra: Iterable[str] = ()
    ) -> AllowedTaskSources:
        """Shipped tasks, `<data_dir>/tasks` when a data folder is given, then `extra`."""
        folders = [SHIPPED_TASKS]
        if data_dir is not None:
            folders.append(Path(data_dir).expanduser() / "tasks")
        return cls(tuple(folders) + tuple(Path(f) for f in extra))

    def include_path(self, folder: str | os.PathLike[str] | None) -> str | None:
        """The folder lm-eval may index for `folder` (None: its registered tasks).

        An allowed folder or a folder inside one is accepted; after
        resolving symlinks and `..` it must still be inside, and must exist.

        Raises:
            TaskSourceError: anything else, with what is allowed.
        """
        if folder is None or not str(folder).strip():
            if self.registered:
                return None
            raise TaskSourceError("Choose a task folder: " + self.describe())
        path = _resolve(folder)
        shown = _shown(path)  # a pasted page is not echoed back whole
        why = forbidden_reason(path)
        if why is not None:
            raise TaskSourceError(f"The task folder {shown} is not allowed: {why}.")
        if not any(_within(path, allowed) for allowed in self.folders):
            raise TaskSourceError(
                f"The task folder {shown} is not one the operator allowed. " + self.describe()
            )
        if not path.is_dir():
            raise TaskSourceError(f"Task folder not found: {shown}")
        return str(path)

    def describe(self) -> str:
        """What may be used, for error messages."""
        names = ", ".join(str(f) for f in self.folders) or "none"
        text = f"Allowed task folders: {names}"
        if self.registered:
            text += "; or none, for lm-eval's registered tasks by name"
        return text + ". The operator adds folders with --allow-task-folder when starting the app."

    def choices(self) -> list[tuple[str, str]]:
        """(label, value) pairs for a dropdown: each existing allowed folder,
        then lm-eval's registered tasks (value REGISTERED)."""
        pairs = []
        for folder in self.folders:
            if folder.is_dir():
                kind = "steerswarm tasks" if folder == SHIPPED_TASKS.resolve() else "task folder"
                pairs.append((f"{kind}: {folder}", str(folder)))
        if self.registered:
            pairs.append(("lm-eval's registered tasks (by name)", REGISTERED))
        return pairs

    def first(self) -> str:
        """The value a form starts with: the first existing folder, else REGISTERED."""
        choices = self.choices()
        return choices[0][1] if choices else REGISTERED


def _shown(path: Path) -> str:
    text = str(path)
    return text if len(text) <= 200 else text[:200] + "…"
