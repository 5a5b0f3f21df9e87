"""What an API request can choose from, and turning its choice into vectors.

Two kinds of vectors can be chosen: the app's active vectors (what the
Steering tab shows) and the vectors saved in the data folder's `vectors/`
(the Steering tab's "Save vectors", or a file copied there). Every vector has
an id; a name is for people:

- a saved file `joy.safetensors` is called `joy`; when it holds several
  vectors, `joy` chooses all of them and `joy#2` the second. The full file
  name works too (`joy.safetensors#2`), and is how a file called
  `active.safetensors` is named;
- the active vectors are `active` (all) and `active#1`, `active#2`, ...

Names and ids are looked up among the listed entries only; nothing a request
sends is ever used as a path.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from steering.capture import recapture
from steering.engine import Steerer
from steering.errors import RequestFieldError, SteerSwarmError, UnknownVectorError
from steering.extract import gguf as gguf_method
from steering.limits import MAX_VECTORS_PER_REQUEST
from steering.models import ModelInfo
from steering.persist import DataFolder
from steering.serving.spec import CHOSEN, NONE, SteeringChoice, VectorChoice
from steering.store import load_vectors, read_metadata
from steering.validate import typed
from steering.vector import SteeringVector, check_alpha, check_layer

ACTIVE = "active"
SUFFIX = ".safetensors"
INCOMPATIBLE = "incompatible_vector"


@dataclass(frozen=True)
class CatalogEntry:
    """One vector a request may choose, as `/v1/steering/vectors` lists it.
    `usable` is false, with the reason in `problem`, for a saved vector that
    does not fit the loaded model (or a file that cannot be read)."""

    id: str
    name: str
    source: str  # "active" or the saved file's name
    layer: int | None
    alpha: float | None
    strength: float | None
    method: str
    summary: str
    made_for: str
    usable: bool = True
    problem: str = ""

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "object": "steering.vector",
            "name": self.name,
            "source": self.source,
            "layer": self.layer,
            "alpha": self.alpha,
            "strength": self.strength,
            "method": self.method,
            "summary": self.summary,
            "made_for": self.made_for,
            "usable": self.usable,
        }
        if self.problem:
            data["problem"] = self.problem
        return data


@dataclass(frozen=True)
class _SavedFile:
    """One saved vector file as last read: its metadata, and its vectors
    when they fit the model they were loaded for (`fits`)."""

    name: str  # the file's name, e.g. joy.safetensors
    path: Path
    stamp: tuple[int, int, int, int]  # (mtime_ns, size, hidden size, layers)
    made_for: str
    vectors: tuple[SteeringVector, ...]
    problem: str = ""

    @property
    def fits(self) -> bool:
        return not self.problem


class VectorCatalog:
    """The vectors of one app: the Steerer's active set and the data folder's
    saved files (none without a data folder). A saved file is read again
    only when it changed or the model's shape did."""

    def __init__(self, data: DataFolder | None) -> None:
        self.data = data
        self._lock = threading.Lock()
        self._files: dict[Path, _SavedFile] = {}

    # -- listing ---------------------------------------------------------------

    def entries(self, steerer: Steerer) -> list[CatalogEntry]:
        """Every vector a request may choose: the active ones first, then each
        saved file's, newest file first."""
        info = steerer.info
        listed = [
            _entry(v, f"{ACTIVE}#{i}", ACTIVE, info.name)
            for i, v in enumerate(steerer.user_vectors, start=1)
        ]
        for saved in self._saved_files(info):
            if not saved.fits:
                listed.append(_unusable(saved))
                continue
            count = len(saved.vectors)
            for i, vector in enumerate(saved.vectors, start=1):
                name = _stem(saved.name) if count == 1 else f"{_stem(saved.name)}#{i}"
                listed.append(_entry(vector, name, saved.name, saved.made_for))
        return listed

    # -- choosing ----------------------------------------------------------------

    def check(self, steerer: Steerer, choice: SteeringChoice) -> None:
        """Everything about `choice` that can be checked without running the
        model: the names and ids exist and fit the model, layers and amounts
        are in range. Raises what `resolve` would, so a bad request is
        refused before it waits for the model."""
        if choice.mode != CHOSEN:
            return
        total = 0
        for item in choice.vectors:
            bases = self._bases(steerer, item)
            total += len(bases)
            for base in bases:
                _check_move(steerer, base, item)
                if item.layer in (None, base.layer):
                    _amount(base, item)
        _check_total(total)

    def resolve(self, steerer: Steerer, choice: SteeringChoice) -> tuple[SteeringVector, ...]:
        """The vectors `choice` steers with. A vector moved to another layer is
        re-extracted there (from the activations the Steerer keeps: a forward
        pass only for prompts it has not seen), so the caller holds the model
        lock, and no scoped setting may be applied meanwhile.

        Raises:
            UnknownVectorError: a name or id nothing listed has.
            RequestFieldError: a vector made for another model (code
                "incompatible_vector"), a layer or amount out of range.
        """
        if choice.mode == NONE:
            return ()
        if choice.mode != CHOSEN:
            return steerer.user_vectors
        vectors: list[SteeringVector] = []
        for item in choice.vectors:
            for base in self._bases(steerer, item):
                _check_move(steerer, base, item)
                moved = base if item.layer is None else recapture(steerer, base, item.layer)
                vectors.append(_amount(moved, item))
        _check_total(len(vectors))
        return tuple(vectors)

    def _bases(self, steerer: Steerer, item: VectorChoice) -> list[SteeringVector]:
        """The vectors `item` names, with their saved layer and alpha."""
        if item.vector_id is not None:
            return [self._by_id(steerer, item.vector_id, item.param)]
        name = item.name or ""
        stem, hash_mark, number = name.partition("#")
        if hash_mark and not number.isdigit():
            raise UnknownVectorError(
                f"{item.param}: {typed(name)} is not a vector name; a name is a saved file's "
                "name, optionally with #N for its N-th vector (see /v1/steering/vectors).",
                f"{item.param}.name",
                "vector_not_found",
            )
        if stem == ACTIVE:
            found, where = list(steerer.user_vectors), "the active vectors"
        else:
            saved = self._find_file(stem, steerer.info)
            if saved is None:
                raise UnknownVectorError(
                    f"{item.param}: there is no saved vector file called {typed(stem)} "
                    f"({self._names_hint(steerer.info)}); /v1/steering/vectors lists the names.",
                    f"{item.param}.name",
                    "vector_not_found",
                )
            found, where = list(_usable(saved, item.param)), saved.name
        if not number:
            if not found:
                raise UnknownVectorError(
                    f"{item.param}: {where} hold no vectors.",
                    f"{item.param}.name",
                    "vector_not_found",
                )
            return found
        index = int(number)
        if not 1 <= index <= len(found):
            raise UnknownVectorError(
                f"{item.param}: {where} hold {len(found)} vector(s), so #{index} does not exist.",
                f"{item.param}.name",
                "vector_not_found",
            )
        return [found[index - 1]]

    def _by_id(self, steerer: Steerer, vector_id: str, param: str) -> SteeringVector:
        for vector in steerer.user_vectors:
            if vector.id == vector_id:
                return vector
        for saved in self._saved_files(steerer.info):
            if vector_id in _ids(saved):
                for vector in _usable(saved, param):
                    if vector.id == vector_id:
                        return vector
        raise UnknownVectorError(
            f"{param}: no active or saved vector has the id {typed(vector_id)}; "
            "/v1/steering/vectors lists the ids.",
            f"{param}.id",
            "vector_not_found",
        )

    # -- the data folder -----------------------------------------------------------

    def _saved_files(self, info: ModelInfo) -> list[_SavedFile]:
        if self.data is None:
            return []
        found = []
        for listed in self.data.saved():
            if listed.kind != "vectors":
                continue
            try:
                stat = listed.path.stat()
            except OSError:
                continue  # removed meanwhile
            stamp = (stat.st_mtime_ns, stat.st_size, info.hidden_size, info.num_layers)
            with self._lock:
                known = self._files.get(listed.path)
            if known is None or known.stamp != stamp:
                known = _read(listed.name, listed.path, stamp, info)
                with self._lock:
                    self._files[listed.path] = known
            found.append(known)
        return found

    def _find_file(self, stem: str, info: ModelInfo) -> _SavedFile | None:
        for saved in self._saved_files(info):
            if stem == saved.name or (stem != ACTIVE and stem == _stem(saved.name)):
                return saved
        return None

    def _names_hint(self, info: ModelInfo) -> str:
        names = [_stem(saved.name) for saved in self._saved_files(info)]
        if not names:
            return "no vector file is saved yet"
        return "saved: " + ", ".join(names[:5]) + (", …" if len(names) > 5 else "")


def _read(name: str, path: Path, stamp: tuple[int, int, int, int], info: ModelInfo) -> _SavedFile:
    """A saved file's vectors for the model `info`, or why it cannot be used."""
    try:
        meta = read_metadata(path)
    except SteerSwarmError as exc:
        return _SavedFile(name, path, stamp, "", (), str(exc))
    model = meta["model"]
    made_for = str(model["name"])
    if model["hidden_size"] != info.hidden_size or model["num_layers"] != info.num_layers:
        problem = (
            f"{name} was made for {made_for} (hidden size {model['hidden_size']}, "
            f"{model['num_layers']} layers); {info.name} has hidden size {info.hidden_size} "
            f"and {info.num_layers} layers."
        )
        return _SavedFile(name, path, stamp, made_for, (), problem)
    try:
        vectors = tuple(load_vectors(path, info))
    except SteerSwarmError as exc:
        return _SavedFile(name, path, stamp, made_for, (), str(exc))
    return _SavedFile(name, path, stamp, made_for, vectors)


def _usable(saved: _SavedFile, param: str) -> tuple[SteeringVector, ...]:
    if not saved.fits:
        raise RequestFieldError(f"{param}: {saved.problem}", param, INCOMPATIBLE)
    return saved.vectors


def _ids(saved: _SavedFile) -> set[str]:
    """The ids a file holds; for a file that does not fit, from its metadata,
    so choosing one of its vectors says why it cannot be used."""
    if saved.fits:
        return {v.id for v in saved.vectors}
    try:
        return {str(e.get("id")) for e in read_metadata(saved.path)["vectors"]}
    except SteerSwarmError:
        return set()


def _entry(vector: SteeringVector, name: str, source: str, made_for: str) -> CatalogEntry:
    return CatalogEntry(
        id=vector.id, name=name, source=source, layer=vector.layer, alpha=vector.alpha,
        strength=vector.strength, method=vector.method, summary=vector.summary(80),
        made_for=made_for,
    )


def _unusable(saved: _SavedFile) -> CatalogEntry:
    return CatalogEntry(
        id="", name=_stem(saved.name), source=saved.name, layer=None, alpha=None, strength=None,
        method="", summary="", made_for=saved.made_for, usable=False, problem=saved.problem,
    )


def _stem(file_name: str) -> str:
    """A saved file's name in requests: its stem, or the whole name for a
    file whose stem is the reserved `active`."""
    stem = file_name.removesuffix(SUFFIX)
    return file_name if stem == ACTIVE else stem


def _check_move(steerer: Steerer, vector: SteeringVector, item: VectorChoice) -> None:
    """The layer `item` asks for exists, and the vector can be moved there."""
    if item.layer is None:
        return
    try:
        check_layer(item.layer, steerer.info.num_layers)
    except SteerSwarmError as exc:
        raise RequestFieldError(f"{item.param}.layer: {exc}", f"{item.param}.layer") from None
    if item.layer != vector.layer and vector.method == gguf_method.METHOD.name:
        raise RequestFieldError(
            f"{item.param}.layer: the vector {vector.id} was read from a GGUF control vector "
            f"for layer {vector.layer}; it cannot be moved to layer {item.layer}.",
            f"{item.param}.layer",
        )


def _amount(vector: SteeringVector, item: VectorChoice) -> SteeringVector:
    """`vector` with the alpha or strength `item` asks for."""
    field = "strength" if item.strength is not None else "alpha"
    try:
        if item.strength is not None:
            return vector.with_alpha(check_alpha(vector.alpha_for(item.strength)))
        if item.alpha is not None:
            return vector.with_alpha(item.alpha)
    except SteerSwarmError as exc:
        raise RequestFieldError(f"{item.param}.{field}: {exc}", f"{item.param}.{field}") from None
    return vector


def _check_total(total: int) -> None:
    if total > MAX_VECTORS_PER_REQUEST:
        raise RequestFieldError(
            f"steering.vectors choose {total} vectors in all (a name may stand for several); "
            f"a request takes at most {MAX_VECTORS_PER_REQUEST}.",
            "steering.vectors",
        )
