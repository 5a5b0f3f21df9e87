"""Saving and loading vector sets: round trips and every way a file can be bad."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import safetensors.torch
import torch

from steering import (
    IncompatibleVectorError,
    InvalidInputError,
    VectorFileError,
    capture_vector,
    steerer_for,
)
from steering.store import load_vectors, save_vectors

IDS = torch.tensor([[1, 520, 3000, 77, 9001]])


def logits(model):
    with torch.no_grad():
        return model(IDS).logits


@pytest.fixture
def steered(tiny):
    steerer = steerer_for(tiny.model, tiny.tokenizer, tiny.name)
    steerer.add(capture_vector(steerer, ["sunny and warm"], 1, 2.5, ["rainy and cold"]))
    steerer.add(capture_vector(steerer, ["a happy song", "joyful news"], 3, -1.0))
    return steerer


def test_round_trip_gives_identical_vectors_and_logits(tiny, steered, tmp_path):
    path = save_vectors(tmp_path / "set.safetensors", steered.vectors, steered.info)
    expected = logits(tiny.model)
    originals = steered.vectors
    steered.reset()
    loaded = load_vectors(path, steered.info)
    assert len(loaded) == 2
    assert all(
        a.same_as(b) and a.created_at == b.created_at
        for a, b in zip(loaded, originals, strict=True)
    )
    assert [v.id for v in loaded] == [v.id for v in originals]
    steered.set_vectors(loaded)
    assert torch.equal(logits(tiny.model), expected)


def test_file_holds_tensors_and_readable_metadata(steered, tmp_path):
    path = save_vectors(tmp_path / "set.safetensors", steered.vectors, steered.info)
    tensors = safetensors.torch.load_file(path)
    assert set(tensors) == {"vector.0", "vector.1"}
    with safetensors.safe_open(str(path), framework="pt") as handle:
        meta = json.loads(handle.metadata()["steerswarm"])
    assert meta["model"] == {
        "name": "tiny-llama",
        "model_type": "llama",
        "hidden_size": 32,
        "num_layers": 4,
    }
    assert meta["version"] == 2
    first, second = meta["vectors"]
    assert first["method"] == "mean_diff" and first["inputs"]["contrast_prompts"] == [
        "rainy and cold"
    ]
    assert second["method"] == "mean" and second["inputs"] == {
        "prompts": ["a happy song", "joyful news"]
    }
    assert second["layer"] == 3 and second["alpha"] == -1.0
    assert [first["id"], second["id"]] == [v.id for v in steered.vectors]


def test_nothing_to_save_is_refused(steered, tmp_path):
    with pytest.raises(InvalidInputError, match="no steering vectors"):
        save_vectors(tmp_path / "x.safetensors", [], steered.info)
    assert not (tmp_path / "x.safetensors").exists()


def test_a_crash_mid_save_keeps_the_previous_file(steered, tmp_path, monkeypatch):
    path = save_vectors(tmp_path / "set.safetensors", steered.vectors[:1], steered.info)
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        save_vectors(path, steered.vectors, steered.info)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["set.safetensors"]  # no temp file left


def _rewrite_meta(path, change):
    tensors = safetensors.torch.load_file(path)
    with safetensors.safe_open(str(path), framework="pt") as handle:
        meta = json.loads(handle.metadata()["steerswarm"])
    change(meta, tensors)
    safetensors.torch.save_file(tensors, path, metadata={"steerswarm": json.dumps(meta)})


@pytest.mark.parametrize(
    ("damage", "error", "message"),
    [
        (lambda p: p.write_bytes(p.read_bytes()[:-40]), VectorFileError, "truncated or corrupt"),
        (lambda p: p.write_bytes(b"\x00" * 64), VectorFileError, "truncated or corrupt"),
        (lambda p: p.write_bytes(b""), VectorFileError, "truncated or corrupt"),
        (lambda p: p.unlink(), VectorFileError, "not found"),
        (
            lambda p: safetensors.torch.save_file({"x": torch.zeros(3)}, p),
            VectorFileError,
            "no steerswarm metadata",
        ),
        (
            lambda p: _rewrite_meta(p, lambda m, t: m["vectors"][0].pop("layer")),
            VectorFileError,
            "lacks the field",
        ),
        (
            lambda p: _rewrite_meta(p, lambda m, t: m.pop("model")),
            VectorFileError,
            "lacks the model",
        ),
        (
            lambda p: _rewrite_meta(p, lambda m, t: m.update(version=9)),
            VectorFileError,
            "format version 9",
        ),
        (
            lambda p: _rewrite_meta(p, lambda m, t: t.pop("vector.1")),
            VectorFileError,
            "vector 2 has no tensor",
        ),
        (
            lambda p: _rewrite_meta(p, lambda m, t: m["vectors"][0].update(alpha="NaN")),
            VectorFileError,
            "invalid",
        ),
        (
            lambda p: _rewrite_meta(p, lambda m, t: m["vectors"][0].update(method="pca")),
            VectorFileError,
            "Unknown extraction method 'pca'; valid methods: gguf, mean, mean_diff",
        ),
        (
            lambda p: _rewrite_meta(
                p, lambda m, t: m["vectors"][1].update(id=m["vectors"][0]["id"])
            ),
            VectorFileError,
            "repeats the id",
        ),
        (
            lambda p: _rewrite_meta(p, lambda m, t: m["model"].update(hidden_size=64)),
            IncompatibleVectorError,
            "hidden size 64",
        ),
        (
            lambda p: _rewrite_meta(p, lambda m, t: m["model"].update(num_layers=30)),
            IncompatibleVectorError,
            "30 layers",
        ),
        (
            lambda p: _rewrite_meta(p, lambda m, t: t.update({"vector.0": torch.zeros(64)})),
            VectorFileError,
            "shape",
        ),
    ],
)
def test_bad_files_are_refused_and_nothing_is_applied(
    tiny, steered, tmp_path, damage, error, message
):
    path = save_vectors(tmp_path / "set.safetensors", steered.vectors, steered.info)
    active = steered.vectors
    damage(path)
    with pytest.raises(error, match=message):
        load_vectors(path, steered.info)
    assert steered.vectors == active


def test_file_for_a_model_of_another_size_is_refused(tiny, tiny_gpt2, steered, tmp_path):
    path = save_vectors(tmp_path / "set.safetensors", steered.vectors, steered.info)
    gpt2 = steerer_for(tiny_gpt2.model, tiny_gpt2.tokenizer, tiny_gpt2.name)
    with pytest.raises(IncompatibleVectorError, match=r"made for tiny-llama.*4 layers.*3 layers"):
        load_vectors(path, gpt2.info)
    assert gpt2.vectors == ()


V1_FILE = Path(__file__).parents[1] / "data" / "vectors-v1.safetensors"


def test_format_1_files_still_load(steered):
    """tests/data/vectors-v1.safetensors was written by the format-1 code (before
    vectors had ids and methods): `coeff` is read as alpha, the method follows
    from the contrast prompts, and every vector gets a fresh id."""
    loaded = load_vectors(V1_FILE, steered.info)
    assert [(v.layer, v.alpha, v.method) for v in loaded] == [
        (1, 2.5, "mean_diff"),
        (3, -1.0, "mean"),
    ]
    assert loaded[0].prompts == ("sunny and warm",) and loaded[0].contrast_prompts == (
        "rainy and cold",
    )
    assert loaded[1].prompts == ("a happy song", "joyful news") and loaded[1].contrast_prompts == ()
    assert len({v.id for v in loaded}) == 2 and loaded[0].created_at == "2026-11-30T03:26:52+00:00"
    # The same tiny model (same seed) gives the same directions as the old capture.
    for old, new in zip(loaded, steered.vectors, strict=True):
        torch.testing.assert_close(old.direction, new.direction, rtol=0, atol=1e-5)
    steered.set_vectors(loaded)
    assert steered.vectors == tuple(loaded)
