"""Vector file metadata is checked field by field.

A text where a list of prompts belongs was read as one prompt per letter,
`layer: true` as layer 1, and other wrong types ended in TypeError or
RecursionError. Each is now a VectorFileError naming the field."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import safetensors.torch

from steering import VectorFileError, capture_vector
from steering.limits import MAX_METADATA_CHARS, MAX_PROMPTS_PER_CAPTURE, MAX_VECTORS_PER_FILE
from steering.store import load_vectors, save_vectors

V1_FILE = Path(__file__).parents[1] / "data" / "vectors-v1.safetensors"


@pytest.fixture
def steered(tiny_steerer):
    tiny_steerer.add(capture_vector(tiny_steerer, ["sunny and warm"], 1, 2.5, ["rainy and cold"]))
    return tiny_steerer


def _rewrite(path: Path, change) -> None:
    tensors = safetensors.torch.load_file(path)
    with safetensors.safe_open(str(path), framework="pt") as handle:
        meta = json.loads(handle.metadata()["steerswarm"])
    change(meta)
    safetensors.torch.save_file(tensors, path, metadata={"steerswarm": json.dumps(meta)})


def _raw(path: Path, raw: str) -> None:
    tensors = safetensors.torch.load_file(path)
    safetensors.torch.save_file(tensors, path, metadata={"steerswarm": raw})


def _set(field, value):
    return lambda meta: meta["vectors"][0].update({field: value})


def _set_input(field, value):
    return lambda meta: meta["vectors"][0]["inputs"].update({field: value})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_set_input("prompts", "hello world"), "inputs.prompts must be a list of texts, got text"),
        (
            _set_input("contrast_prompts", [1, 2]),
            r"inputs.contrast_prompts\[0\] must be text, got 1",
        ),
        (_set("layer", True), "layer must be a whole number, got True"),
        (_set("layer", 1.0), "layer must be a whole number, got 1.0"),
        (_set("layer", "1"), "layer must be a whole number, got text"),
        (_set("layer", -1), "layer must be 0 or more, got -1"),
        (_set("alpha", [2.5]), "alpha must be a number, got a list"),
        (_set("alpha", False), "alpha must be a number, got False"),
        (_set("id", 7), "id must be text, got 7"),
        (_set("id", ""), "id must not be empty"),
        (_set("method", {"name": "mean"}), "method must be text, got a mapping"),
        (_set("inputs", ["hello"]), "inputs must be a mapping, got a list"),
        (_set("created_at", None), "created_at must be text, got None"),
        (
            lambda m: m["model"].update(hidden_size=True),
            "model.hidden_size must be a whole number, got True",
        ),
        (
            lambda m: m["model"].update(num_layers="4"),
            "model.num_layers must be a whole number, got text",
        ),
        (lambda m: m["model"].update(name=["tiny"]), "model.name must be text, got a list"),
        (lambda m: m.update(version=True), "format version True"),
        (lambda m: m["vectors"].__setitem__(0, "vector"), "the entry must be a mapping, got text"),
        (
            _set_input("prompts", ["p"] * (MAX_PROMPTS_PER_CAPTURE + 1)),
            (
                f"inputs.prompts holds {MAX_PROMPTS_PER_CAPTURE + 1:,} items; "
                f"at most {MAX_PROMPTS_PER_CAPTURE:,}"
            ),
        ),
        (
            lambda m: m.update(vectors=[m["vectors"][0]] * (MAX_VECTORS_PER_FILE + 1)),
            f"at most {MAX_VECTORS_PER_FILE}",
        ),
    ],
)
def test_each_wrong_field_is_named(steered, tmp_path, change, message):
    path = save_vectors(tmp_path / "v.safetensors", steered.vectors, steered.info)
    _rewrite(path, change)
    active = steered.vectors
    with pytest.raises(VectorFileError, match=message):
        load_vectors(path, steered.info)
    assert steered.vectors == active


def test_deeply_nested_or_huge_metadata_is_refused(steered, tmp_path):
    path = save_vectors(tmp_path / "v.safetensors", steered.vectors, steered.info)
    _raw(path, "[" * 100_000 + "]" * 100_000)
    with pytest.raises(VectorFileError, match="nested too deeply"):
        load_vectors(path, steered.info)
    _raw(path, json.dumps({"format": "steerswarm.vectors", "pad": "x" * MAX_METADATA_CHARS}))
    with pytest.raises(VectorFileError, match=r"metadata is 16,777,2.. characters long"):
        load_vectors(path, steered.info)


def test_a_format_1_file_with_a_text_for_its_prompts_is_refused(steered, tmp_path):
    """Format 1 read `prompts` with tuple(): "hello world" was eleven prompts."""
    path = tmp_path / "v1.safetensors"
    shutil.copy(V1_FILE, path)
    _rewrite(path, lambda meta: meta["vectors"][1].update(prompts="hello world"))
    with pytest.raises(
        VectorFileError, match="vector 2 is invalid: prompts must be a list of texts, got text"
    ):
        load_vectors(path, steered.info)
    _rewrite(path, lambda meta: meta["vectors"][1].update(prompts=["hello world"], coeff=True))
    with pytest.raises(VectorFileError, match="coeff must be a number, got True"):
        load_vectors(path, steered.info)
