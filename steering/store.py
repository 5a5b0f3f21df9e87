"""Saving and loading a set of steering vectors.

One file: safetensors holds the directions, and its string metadata holds a
JSON document describing the set. Nothing is ever unpickled.

Format version 2 (written): each vector entry is
    {"id", "layer", "alpha", "method", "inputs": {...}, "created_at"}
and optionally "layer_norm" (the norm the strength unit was calibrated with;
absent in files from before the unit), where `method` names a registered
extraction method and `inputs` its inputs (for `mean` / `mean_diff`:
"prompts" and "contrast_prompts" lists). The raw alpha is what is stored;
a strength is alpha * |V| / layer_norm.
Version 1 (still read) had {"layer", "coeff", "prompts", "contrast_prompts",
"created_at"}: the method is `mean_diff` when it has contrast prompts, else
`mean`, and each vector gets a new id.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import safetensors
import safetensors.torch
import torch

from steering import schema
from steering.errors import (
    IncompatibleVectorError,
    InvalidInputError,
    VectorFileError,
    VectorWriteError,
)
from steering.extract import VectorSource
from steering.extract.base import CONTRAST_PROMPTS, PROMPTS
from steering.limits import MAX_METADATA_CHARS, MAX_PROMPTS_PER_CAPTURE, MAX_VECTORS_PER_FILE, count
from steering.models import ModelInfo
from steering.outputs import atomic_write, reason
from steering.validate import typed
from steering.vector import SteeringVector

FORMAT = "steerswarm.vectors"
FORMAT_VERSION = 2
_META_KEY = "steerswarm"
_VECTOR_FIELDS = {
    1: ("layer", "coeff", "prompts", "contrast_prompts", "created_at"),
    2: ("id", "layer", "alpha", "method", "inputs", "created_at"),
}


def save_vectors(
    path: str | Path, vectors: Sequence[SteeringVector], info: ModelInfo, *, replace: bool = True
) -> Path:
    """Write `vectors` to `path` atomically: a crash leaves any old file intact.
    With `replace` False an existing file is kept and InvalidInputError says so
    (a visitor's save must not silently overwrite someone's file)."""
    path = Path(path)
    if not vectors:
        raise InvalidInputError("There are no steering vectors to save.")
    if not replace and path.exists():
        raise InvalidInputError(
            f"A file called {typed(path.name)} is already in {typed(str(path.parent))}; it was "
            "kept. Save under another name, or ask to replace it."
        )
    tensors = {f"vector.{i}": v.direction.contiguous() for i, v in enumerate(vectors)}
    meta = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "model": {
            "name": info.name,
            "model_type": info.model_type,
            "hidden_size": info.hidden_size,
            "num_layers": info.num_layers,
        },
        "vectors": [
            {
                "id": v.id,
                "layer": v.layer,
                "alpha": v.alpha,
                **v.source.to_json(),
                "created_at": v.created_at,
                **({} if v.layer_norm is None else {"layer_norm": v.layer_norm}),
            }
            for v in vectors
        ],
    }
    data = safetensors.torch.save(tensors, metadata={_META_KEY: json.dumps(meta)})
    try:
        return atomic_write(path, data)
    except OSError as exc:  # a read-only folder or a full disk: the old file is intact
        raise VectorWriteError(
            f"Could not write {path}: {reason(exc)}. Any earlier file there is unchanged."
        ) from exc


def read_metadata(path: str | Path) -> dict[str, Any]:
    """A vector file's checked metadata (model and vector entries), without
    fitting it to a model: to list saved files and to name vectors a model
    refused. Raises VectorFileError."""
    path = Path(path)
    try:
        with safetensors.safe_open(str(path), framework="pt") as handle:
            raw = (handle.metadata() or {}).get(_META_KEY)
    except Exception as exc:  # safetensors raises several untyped errors
        raise VectorFileError(f"{path.name} is not a readable steering vector file: {exc}") from exc
    return _parse_meta(path, raw)


def load_vectors(path: str | Path, info: ModelInfo) -> list[SteeringVector]:
    """Read a vector file and check that every vector fits the model `info`.

    Raises:
        VectorFileError: missing, truncated, corrupt or incomplete file.
        IncompatibleVectorError: made for another hidden size or layer count.
    """
    path = Path(path)
    try:
        found = path.is_file()
    except OSError as exc:  # a name too long for the filesystem, a loop of links
        raise VectorFileError(
            f"Cannot read the vector file {typed(str(path))}: {reason(exc)}."
        ) from None
    if not found:
        raise VectorFileError(f"Vector file not found: {typed(str(path))}")
    try:
        data = path.read_bytes()
        tensors = safetensors.torch.load(data)
        with safetensors.safe_open(str(path), framework="pt") as handle:
            raw_meta = (handle.metadata() or {}).get(_META_KEY)
    except Exception as exc:  # safetensors raises several untyped errors
        raise VectorFileError(
            f"{path.name} is not a readable steering vector file (truncated or corrupt): {exc}"
        ) from exc
    meta = _parse_meta(path, raw_meta)
    model = meta["model"]
    if model["hidden_size"] != info.hidden_size or model["num_layers"] != info.num_layers:
        raise IncompatibleVectorError(
            f"{path.name} was made for {model['name']} (hidden size {model['hidden_size']}, "
            f"{model['num_layers']} layers); the loaded model {info.name} has hidden size "
            f"{info.hidden_size} and {info.num_layers} layers."
        )
    vectors: list[SteeringVector] = []
    for i, entry in enumerate(meta["vectors"]):
        tensor = tensors.get(f"vector.{i}")
        if tensor is None:
            raise VectorFileError(f"{path.name}: vector {i + 1} has no tensor.")
        if tensor.dim() != 1 or tensor.shape[0] != info.hidden_size:
            raise VectorFileError(
                f"{path.name}: vector {i + 1} has shape {tuple(tensor.shape)}, "
                f"expected ({info.hidden_size},)."
            )
        try:
            vector = _vector(meta["version"], entry, tensor)
        except InvalidInputError as exc:
            raise VectorFileError(f"{path.name}: vector {i + 1} is invalid: {exc}") from exc
        if vector.layer >= info.num_layers:
            raise IncompatibleVectorError(
                f"{path.name}: vector {i + 1} is for layer {vector.layer}, "
                f"but the model has layers 0 to {info.num_layers - 1}."
            )
        if any(v.id == vector.id for v in vectors):
            raise VectorFileError(f"{path.name}: vector {i + 1} repeats the id {vector.id!r}.")
        vectors.append(vector)
    return vectors


def _vector(version: int, entry: dict[str, Any], tensor: torch.Tensor) -> SteeringVector:
    """One vector from its checked file entry (of format `version`)."""
    if version == 1:
        return SteeringVector(
            layer=entry["layer"],
            alpha=entry["coeff"],
            direction=tensor,
            source=VectorSource.from_prompts(entry["prompts"], entry["contrast_prompts"]),
            created_at=entry["created_at"],
        )
    return SteeringVector(
        layer=entry["layer"],
        alpha=entry["alpha"],
        direction=tensor,
        source=VectorSource(entry["method"], entry["inputs"]),
        created_at=entry["created_at"],
        id=entry["id"],
        layer_norm=entry.get("layer_norm"),
    )


def _check_entry(version: int, entry: Any) -> None:
    """Every field of one vector entry has its type (schema.py): a text where
    a list of prompts belongs, or true where a layer belongs, is refused."""
    entry = schema.mapping("the entry", entry)
    missing = [f for f in _VECTOR_FIELDS[version] if f not in entry]
    if missing:
        raise schema.SchemaError(f"it lacks the field(s) {', '.join(missing)}.")
    alpha = "coeff" if version == 1 else "alpha"
    schema.whole("layer", entry["layer"], minimum=0)
    schema.number(alpha, entry[alpha])
    schema.text("created_at", entry["created_at"], max_chars=64)
    if version == 1:
        for key in (PROMPTS, CONTRAST_PROMPTS):
            schema.text_list(key, entry[key], MAX_PROMPTS_PER_CAPTURE)
        return
    schema.text("id", entry["id"], max_chars=64, empty=False)
    schema.text("method", entry["method"], max_chars=64, empty=False)
    inputs = schema.mapping("inputs", entry["inputs"])
    for key in (PROMPTS, CONTRAST_PROMPTS):
        if key in inputs:
            schema.text_list(f"inputs.{key}", inputs[key], MAX_PROMPTS_PER_CAPTURE)


def _parse_meta(path: Path, raw: str | None) -> dict[str, Any]:
    """The metadata, checked field by field before any of it is used."""
    if raw is None:
        raise VectorFileError(f"{path.name} has no steerswarm metadata.")
    if len(raw) > MAX_METADATA_CHARS:
        raise VectorFileError(
            f"{path.name}: its metadata is {count(len(raw))} characters long; a vector "
            f"file's is at most {count(MAX_METADATA_CHARS)}."
        )
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise VectorFileError(f"{path.name}: metadata is not valid JSON ({exc}).") from exc
    except RecursionError:
        raise VectorFileError(f"{path.name}: metadata is nested too deeply.") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise VectorFileError(f"{path.name} is not a steerswarm vector file.")
    version = meta.get("version")
    if isinstance(version, bool) or version not in _VECTOR_FIELDS:
        raise VectorFileError(
            f"{path.name} has format version {version!r}; "
            f"this steerswarm reads versions {', '.join(map(str, _VECTOR_FIELDS))}."
        )
    model = meta.get("model")
    vectors = meta.get("vectors")
    if not isinstance(model, dict) or not isinstance(vectors, list) or not vectors:
        raise VectorFileError(f"{path.name}: metadata lacks the model or the vectors.")
    try:
        schema.text("model.name", model.get("name"), max_chars=1000)
        schema.whole("model.hidden_size", model.get("hidden_size"), minimum=1)
        schema.whole("model.num_layers", model.get("num_layers"), minimum=1)
        schema.items("vectors", vectors, MAX_VECTORS_PER_FILE)
    except schema.SchemaError as exc:
        raise VectorFileError(f"{path.name}: in the metadata, {exc}") from None
    for i, entry in enumerate(vectors):
        try:
            _check_entry(version, entry)
        except schema.SchemaError as exc:
            raise VectorFileError(f"{path.name}: vector {i + 1} is invalid: {exc}") from None
    return meta
