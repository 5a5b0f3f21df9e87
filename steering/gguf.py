"""GGUF control vectors: llama.cpp's and repeng's file format, in and out.

A control vector file is a GGUF file whose `general.architecture` is
`controlvector`, with a `controlvector.model_hint` string (the model's
architecture), a `controlvector.layer_count` integer and one 1-D float32
tensor `direction.N` per steered layer. Read from the sources (see
docs/gguf.md for the exact lines):

- llama.cpp adds `direction.N` to the OUTPUT of decoder layer N (0-based):
  `build_cvec(cur, il)` runs at the end of layer `il` and adds the tensor the
  loader filled from `direction.<il>`. It refuses a file holding
  `direction.0` ("invalid (zero) direction tensor layer index"), and never
  steers the embeddings.
- repeng's `ControlModel` adds `directions[i]` to the output of
  `model.model.layers[i]`, and `export_gguf` names it `direction.i`.

steerswarm's "layer L" is the state ENTERING decoder layer L, which is the
output of layer L - 1. So our layer L is `direction.(L-1)`:
our layer 0 (the embeddings) has no llama.cpp counterpart, our layer 1 would
be `direction.0`, which llama.cpp refuses, and `direction.(n-1)` (the output
of the last layer, which feeds the final norm) has no steerswarm counterpart.
Exports therefore start at our layer 2, and imports of the last layer's
direction are refused unless the caller asks to leave it out.
"""

from __future__ import annotations

import json
import os
import shlex
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import gguf
import numpy as np
import torch

from steering.errors import (
    IncompatibleVectorError,
    InvalidInputError,
    VectorFileError,
    VectorWriteError,
)
from steering.extract import VectorSource
from steering.extract.gguf import FILE, METHOD, TENSOR
from steering.limits import MAX_DIRECTION_NORM
from steering.models import ModelInfo
from steering.outputs import reason
from steering.store import load_vectors, read_metadata
from steering.vector import SteeringVector, check_alpha

ARCH = "controlvector"
KEY_ARCH = "general.architecture"
KEY_MODEL_HINT = f"{ARCH}.model_hint"
KEY_LAYER_COUNT = f"{ARCH}.layer_count"
# Written by steerswarm only (llama.cpp and repeng ignore other keys): the
# model the file was made for, so importing it checks the layer count too.
KEY_STEERSWARM_MODEL = "steerswarm.model"
DIRECTION_PREFIX = "direction."

# Our lowest layer llama.cpp can steer: our layer 1 would be `direction.0`.
FIRST_EXPORTABLE_LAYER = 2

# Hugging Face `model_type` -> the `general.architecture` llama.cpp's
# converter writes for it, where the two differ (cvector-generator writes the
# latter as the model hint, repeng the former).
_LLAMA_CPP_ARCH = {"mistral": "llama", "mixtral": "llama", "cohere": "command-r"}


def direction_index(layer: int) -> int:
    """The `direction.N` index of our layer `layer` (the state entering it)."""
    return layer - 1


def layer_of(index: int) -> int:
    """Our layer for `direction.<index>` (added to the output of layer `index`)."""
    return index + 1


def same_architecture(model_hint: str, model_type: str) -> bool:
    """Whether a file's model hint names the loaded model's architecture, under
    either the Hugging Face name or llama.cpp's."""
    hint = model_hint.strip().lower()
    model_type = model_type.strip().lower()
    return hint in (model_type, _LLAMA_CPP_ARCH.get(model_type, model_type))


@dataclass(frozen=True)
class ControlVectorFile:
    """The contents of a control vector file.

    `directions` maps the llama.cpp index N of `direction.N` to its tensor
    ([hidden], float32, CPU); `made_for` is the steerswarm model record when
    steerswarm wrote the file, else None.
    """

    name: str
    model_hint: str
    directions: Mapping[int, torch.Tensor]
    made_for: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "directions", MappingProxyType(dict(self.directions)))

    @property
    def hidden_size(self) -> int:
        return int(next(iter(self.directions.values())).shape[0])

    @property
    def layer_range(self) -> tuple[int, int]:
        """First and last direction index, as llama.cpp's layer range counts."""
        return min(self.directions), max(self.directions)


def layer_deltas(vectors: Sequence[SteeringVector]) -> dict[int, torch.Tensor]:
    """sum(alpha * V) of the vectors at each of our layers."""
    deltas: dict[int, torch.Tensor] = {}
    for vector in vectors:
        delta = vector.alpha * vector.direction
        deltas[vector.layer] = deltas[vector.layer] + delta if vector.layer in deltas else delta
    return deltas


def control_vector_of(
    deltas: Mapping[int, torch.Tensor], info: ModelInfo, name: str = ""
) -> ControlVectorFile:
    """The control vector that adds `deltas[L]` to the state entering our layer L.

    Raises:
        InvalidInputError: nothing to export, a layer llama.cpp cannot steer,
            or a delta that does not fit the model.
    """
    if not deltas:
        raise InvalidInputError("There are no active vectors to export.")
    directions = {}
    for layer, delta in sorted(deltas.items()):
        if layer < FIRST_EXPORTABLE_LAYER or layer >= info.num_layers:
            raise InvalidInputError(_unexportable(layer, info.num_layers))
        if delta.dim() != 1 or delta.shape[0] != info.hidden_size:
            raise InvalidInputError(
                f"The steering at layer {layer} has shape {tuple(delta.shape)}; "
                f"{info.name} needs ({info.hidden_size},)."
            )
        if not torch.isfinite(delta).all():
            raise InvalidInputError(f"The steering at layer {layer} is not finite.")
        directions[direction_index(layer)] = delta.detach().to("cpu", torch.float32)
    made_for = {"name": info.name, "hidden_size": info.hidden_size, "num_layers": info.num_layers}
    return ControlVectorFile(name, info.model_type, directions, made_for)


def _unexportable(layer: int, num_layers: int) -> str:
    if layer == 0:
        why = (
            "layer 0 steers the embeddings (the state entering the first decoder layer), "
            "and llama.cpp only adds control vectors to a decoder layer's output"
        )
    elif layer == 1:
        why = (
            "layer 1 is the output of decoder layer 0, which would be direction.0, and "
            "llama.cpp refuses a control vector file holding direction.0"
        )
    else:
        why = f"the model has layers 0 to {num_layers - 1}"
    return (
        f"Cannot export a vector at layer {layer} for llama.cpp: {why}. "
        f"Move it to a layer from {FIRST_EXPORTABLE_LAYER} to {num_layers - 1} first."
    )


def write_control_vector(path: str | Path, control: ControlVectorFile) -> Path:
    """Write `control` atomically (a crash leaves any old file intact)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        writer = gguf.GGUFWriter(tmp, ARCH)
        writer.add_string(KEY_MODEL_HINT, control.model_hint)
        # cvector-generator writes an int32 here, repeng a uint32; llama.cpp reads neither.
        writer.add_int32(KEY_LAYER_COUNT, len(control.directions))
        if control.made_for is not None:
            writer.add_string(KEY_STEERSWARM_MODEL, json.dumps(dict(control.made_for)))
        for index, tensor in sorted(control.directions.items()):
            data = np.ascontiguousarray(tensor.numpy(), dtype=np.float32)
            writer.add_tensor(f"{DIRECTION_PREFIX}{index}", data)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def export_control_vector(
    path: str | Path, vectors: Sequence[SteeringVector], info: ModelInfo
) -> ControlVectorFile:
    """Write `vectors` (the active set, or a result's setting) as one control
    vector file for the model `info`; nothing is written if any is refused."""
    control = control_vector_of(layer_deltas(vectors), info, Path(path).name)
    try:
        write_control_vector(path, control)
    except OSError as exc:  # a full disk or a read-only folder: no partial file is left
        raise VectorWriteError(
            f"Could not write {Path(path).name}: {reason(exc)}. Any earlier file there is "
            "unchanged."
        ) from exc
    return control


def read_control_vector(path: str | Path) -> ControlVectorFile:
    """Read a control vector file with the checks llama.cpp's loader makes.

    Raises:
        VectorFileError: missing, truncated or corrupt, not a control vector
            (a model GGUF, say), or a direction tensor llama.cpp would refuse.
    """
    path = Path(path)
    if not path.is_file():
        raise VectorFileError(f"Control vector file not found: {path}")
    try:
        reader = gguf.GGUFReader(path)
        arch = _string(reader, KEY_ARCH)
        if arch != ARCH:  # before copying any tensor: a model file is large
            what = f"of architecture {arch!r}" if arch else "without an architecture"
            raise VectorFileError(
                f"{path.name} is a GGUF file {what}, not a control vector (a control "
                f"vector's architecture is {ARCH!r}; a model file cannot be loaded as one)."
            )
        hint = _string(reader, KEY_MODEL_HINT)
        made_for = _string(reader, KEY_STEERSWARM_MODEL)
        tensors = [
            (t.name, t.tensor_type, [int(n) for n in t.shape], np.array(t.data, copy=True))
            for t in reader.tensors
        ]
    except VectorFileError:
        raise
    except Exception as exc:  # gguf raises several untyped errors on bad bytes
        raise VectorFileError(
            f"{path.name} is not a readable GGUF file (truncated or corrupt): {exc}"
        ) from exc
    if hint is None:
        raise VectorFileError(f"{path.name} lacks the {KEY_MODEL_HINT} field.")
    return ControlVectorFile(path.name, hint, _directions(path.name, tensors), _made_for(made_for))


def _string(reader: gguf.GGUFReader, key: str) -> str | None:
    field = reader.get_field(key)
    if field is None:
        return None
    if field.types != [gguf.GGUFValueType.STRING]:
        raise VectorFileError(f"The field {key} is not a string.")
    return str(field.contents())


def _directions(
    name: str, tensors: list[tuple[str, Any, list[int], np.ndarray]]
) -> dict[int, torch.Tensor]:
    directions: dict[int, torch.Tensor] = {}
    for tensor_name, kind, shape, data in tensors:
        prefix, _, number = tensor_name.partition(".")
        if prefix + "." != DIRECTION_PREFIX or not number.isdigit():
            raise VectorFileError(
                f"{name} holds a tensor {tensor_name!r}; a control vector holds only "
                "direction.N tensors."
            )
        if kind != gguf.GGMLQuantizationType.F32 or len(shape) != 1:
            raise VectorFileError(
                f"{name}: {tensor_name} must be a 1-D float32 tensor (llama.cpp refuses "
                f"others), got {kind.name} of shape {tuple(shape)}."
            )
        tensor = torch.from_numpy(data.astype(np.float32).reshape(-1))
        if not torch.isfinite(tensor).all():
            raise VectorFileError(f"{name}: {tensor_name} holds NaN or infinite values.")
        norm = float(tensor.double().norm())  # float64: values near 3e38 overflow float32
        if not norm <= MAX_DIRECTION_NORM:
            raise VectorFileError(
                f"{name}: {tensor_name} has norm {norm:.3g}; a steering direction's norm is at "
                f"most {MAX_DIRECTION_NORM:g} (a hidden state is never that long)."
            )
        index = int(number)
        # llama.cpp adds up directions repeated for one layer.
        directions[index] = directions[index] + tensor if index in directions else tensor
    if not directions:
        raise VectorFileError(f"{name} holds no direction tensors.")
    sizes = {int(t.shape[0]) for t in directions.values()}
    if len(sizes) != 1:
        raise VectorFileError(
            f"{name}: its directions have different sizes ({', '.join(map(str, sorted(sizes)))})."
        )
    return directions


def _made_for(raw: str | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        made_for = json.loads(raw)
    except json.JSONDecodeError:
        made_for = None
    if not isinstance(made_for, dict) or not all(
        isinstance(made_for.get(key), int) for key in ("hidden_size", "num_layers")
    ):
        raise VectorFileError(f"The field {KEY_STEERSWARM_MODEL} is malformed.")
    return made_for


@dataclass(frozen=True)
class ImportedControlVector:
    """What an import made: the vectors (not yet applied) and what it left out."""

    vectors: tuple[SteeringVector, ...]
    file: ControlVectorFile
    left_out: tuple[str, ...] = ()

    @property
    def notice(self) -> str:
        layers = ", ".join(str(v.layer) for v in self.vectors)
        text = f"Imported {len(self.vectors)} vector(s) from {self.file.name} at layer(s) {layers}."
        if self.left_out:
            text += " Left out: " + "; ".join(self.left_out) + "."
        return text


def check_control_vector(
    control: ControlVectorFile, info: ModelInfo, skip_last_layer: bool
) -> list[str]:
    """Raise IncompatibleVectorError unless `control` fits the model `info`;
    return what would be left out (all-zero directions, and the last layer's
    when `skip_last_layer`)."""
    if not same_architecture(control.model_hint, info.model_type):
        raise IncompatibleVectorError(
            f"{control.name} was made for a {control.model_hint!r} model; the loaded model "
            f"{info.name} is a {info.model_type!r} model."
        )
    made_for = control.made_for
    if made_for is not None and (
        made_for["hidden_size"] != info.hidden_size or made_for["num_layers"] != info.num_layers
    ):
        raise IncompatibleVectorError(
            f"{control.name} was made for {made_for.get('name', 'a model')} (hidden size "
            f"{made_for['hidden_size']}, {made_for['num_layers']} layers); the loaded model "
            f"{info.name} has hidden size {info.hidden_size} and {info.num_layers} layers."
        )
    if control.hidden_size != info.hidden_size:
        raise IncompatibleVectorError(
            f"{control.name} holds directions of size {control.hidden_size}, but {info.name} "
            f"has hidden size {info.hidden_size}."
        )
    last = info.num_layers - 1
    beyond = [index for index in control.directions if index > last]
    if beyond:
        raise IncompatibleVectorError(
            f"{control.name} steers layer output(s) {', '.join(map(str, sorted(beyond)))}, but "
            f"{info.name} has decoder layers 0 to {last}: it was made for a larger model."
        )
    left_out = [
        f"direction.{index} (all zeros)"
        for index, tensor in sorted(control.directions.items())
        if not bool(tensor.any())
    ]
    if last in control.directions and bool(control.directions[last].any()):
        if not skip_last_layer:
            raise IncompatibleVectorError(
                f"{control.name} holds direction.{last}, added to the output of the last "
                f"decoder layer (just before the final norm); steerswarm steers the state "
                f"entering a layer, so it cannot apply that one. Import with the last "
                f"layer left out to apply the others."
            )
        left_out.append(
            f"direction.{last} (the last layer's output, which steerswarm cannot steer)"
        )
    return left_out


def vectors_of(
    control: ControlVectorFile, info: ModelInfo, scale: float = 1.0, skip_last_layer: bool = False
) -> ImportedControlVector:
    """One vector per direction, at our layer N + 1 for `direction.N`, with
    alpha `scale` and the direction as stored (so alpha 1 steers as llama.cpp
    does at scale 1).

    Raises:
        IncompatibleVectorError: another architecture, hidden size or layer
            count, or the last layer's direction without `skip_last_layer`.
        InvalidInputError: a scale out of range.
    """
    scale = check_alpha(scale)
    left_out = check_control_vector(control, info, skip_last_layer)
    vectors = tuple(
        SteeringVector(
            layer=layer_of(index),
            alpha=scale,
            direction=tensor,
            source=VectorSource(METHOD.name, {FILE: control.name, TENSOR: f"direction.{index}"}),
        )
        for index, tensor in sorted(control.directions.items())
        if layer_of(index) < info.num_layers and bool(tensor.any())
    )
    if not vectors:
        raise IncompatibleVectorError(f"{control.name} holds nothing steerswarm can apply.")
    return ImportedControlVector(vectors, control, tuple(left_out))


def import_control_vector(
    path: str | Path, info: ModelInfo, scale: float = 1.0, skip_last_layer: bool = False
) -> ImportedControlVector:
    """Read a control vector file (from llama.cpp's cvector-generator, repeng's
    export_gguf or this module) as vectors for the model `info`. Nothing is
    applied: the caller adds them to its Steerer, which checks them again."""
    return vectors_of(read_control_vector(path), info, scale, skip_last_layer)


def llama_cpp_flags(path: str | Path, control: ControlVectorFile, scale: float = 1.0) -> str:
    """The llama-server flags that apply `control`, written to `path`, at
    `scale` (text-generation-webui's llama.cpp loader takes them as is in its
    `extra-flags` field, which it splits with shlex).

    `--control-vector-scaled` takes `FNAME:SCALE` in llama.cpp 0c1e57098 (the
    one llama-cpp-python 0.3.36 builds); older builds took `FNAME SCALE`, so
    at scale 1 the plain `--control-vector FNAME`, the same in both, is used.
    """
    scale = check_alpha(scale)
    text = str(path)
    # llama.cpp splits these values at commas (several files) and colons (the scale).
    if "," in text or (scale != 1.0 and ":" in text):
        raise InvalidInputError(
            f"llama.cpp cannot take the path {text!r} in its control vector flags "
            "(it splits them at ',' and ':'); save the file under a plainer path."
        )
    start, end = control.layer_range
    if scale == 1.0:
        vector_flag = f"--control-vector {shlex.quote(text)}"
    else:
        vector_flag = f"--control-vector-scaled {shlex.quote(f'{text}:{scale!r}')}"
    return f"{vector_flag} --control-vector-layer-range {start} {end}"



def load_vector_file(path: str | Path, info: ModelInfo) -> tuple[list[SteeringVector], str]:
    """The vectors of a steerswarm vector file, or of a GGUF control vector
    (by its `.gguf` name, with the last layer's direction left out and said
    so), and a line saying what was loaded. Nothing is applied."""
    if Path(path).suffix.lower() == ".gguf":
        imported = import_control_vector(path, info, skip_last_layer=True)
        return list(imported.vectors), imported.notice
    vectors = load_vectors(path, info)
    line = f"Loaded {len(vectors)} vector(s) from {Path(path).name}."
    made_for = read_metadata(path)["model"]["name"]
    if made_for != info.name:  # same shape (checked above): a sibling or fine-tune
        line += (
            f" They were made for {made_for}, not {info.name} (same hidden size and "
            "layer count): check that they steer as expected."
        )
    return vectors, line
