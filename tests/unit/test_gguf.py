"""GGUF control vectors (steering/gguf.py) on the tiny Llama: the exact layer
mapping against a reference that adds to a layer's output as llama.cpp and
repeng do, the file format, and every refusal leaving nothing applied."""

from __future__ import annotations

import shlex

import gguf
import numpy as np
import pytest
import torch

from steering import steerer_for
from steering.capture import recapture
from steering.errors import IncompatibleVectorError, InvalidInputError, VectorFileError
from steering.extract import VectorSource
from steering.gguf import (
    ARCH,
    KEY_LAYER_COUNT,
    KEY_MODEL_HINT,
    ControlVectorFile,
    control_vector_of,
    export_control_vector,
    import_control_vector,
    llama_cpp_flags,
    read_control_vector,
    write_control_vector,
)
from steering.models import EMBEDDED_GGUF, embedded_model_folder
from steering.vector import SteeringVector

IDS = torch.tensor([[1, 23, 456, 78, 9, 1011]])


def _vector(layer: int, alpha: float, seed: int, size: int = 32) -> SteeringVector:
    direction = torch.randn(size, generator=torch.Generator().manual_seed(seed))
    return SteeringVector(layer, alpha, direction, VectorSource.from_prompts([f"p{seed}"]))


def _logits(model, ids=IDS) -> torch.Tensor:
    with torch.no_grad():
        return model(ids).logits


def _output_steered_logits(model, directions: dict[int, torch.Tensor]) -> torch.Tensor:
    """Reference: add `directions[N]` to the OUTPUT of decoder layer N, as
    llama.cpp's build_cvec and repeng's ControlModule do."""

    def hook_for(delta):
        def hook(module, args, output):
            if isinstance(output, tuple):
                return (output[0] + delta, *output[1:])
            return output + delta

        return hook

    handles = [
        model.model.layers[index].register_forward_hook(hook_for(delta))
        for index, delta in directions.items()
    ]
    try:
        return _logits(model)
    finally:
        for handle in handles:
            handle.remove()


@pytest.fixture
def steerer(tiny):
    steerer = steerer_for(tiny.model, tiny.tokenizer, tiny.name)
    yield steerer
    steerer.reset()


def test_export_writes_llama_cpp_layout_one_summed_direction_per_layer(steerer, tmp_path):
    vectors = [_vector(2, 1.5, 1), _vector(3, -2.0, 2), _vector(3, 0.5, 3)]
    path = tmp_path / "cv.gguf"
    export_control_vector(path, vectors, steerer.info)
    reader = gguf.GGUFReader(path)
    assert reader.get_field("general.architecture").contents() == ARCH
    assert reader.get_field(KEY_MODEL_HINT).contents() == "llama"
    assert reader.get_field(KEY_LAYER_COUNT).contents() == 2
    tensors = {t.name: t for t in reader.tensors}
    assert sorted(tensors) == ["direction.1", "direction.2"]  # our layer L is direction.(L-1)
    assert all(t.tensor_type == gguf.GGMLQuantizationType.F32 for t in tensors.values())
    expected_2 = -2.0 * vectors[1].direction + 0.5 * vectors[2].direction
    assert np.allclose(tensors["direction.1"].data, 1.5 * vectors[0].direction.numpy())
    assert np.allclose(tensors["direction.2"].data, expected_2.numpy())


def test_exported_file_steers_a_layer_output_exactly_as_we_steer_its_input(steerer, tmp_path):
    vectors = [_vector(2, 3.0, 4), _vector(3, -1.0, 5)]
    control = export_control_vector(tmp_path / "cv.gguf", vectors, steerer.info)
    with steerer.applied(vectors):
        ours = _logits(steerer.model)
    reference = _output_steered_logits(steerer.model, dict(control.directions))
    unsteered = _logits(steerer.model)
    assert (ours - unsteered).abs().max() > 1e-2  # the vectors do steer
    torch.testing.assert_close(ours, reference, rtol=0, atol=1e-5)


def test_import_round_trip_steers_identically_and_records_the_file(steerer, tmp_path):
    vectors = [_vector(2, 2.0, 6), _vector(3, 0.7, 7)]
    export_control_vector(tmp_path / "cv.gguf", vectors, steerer.info)
    imported = import_control_vector(tmp_path / "cv.gguf", steerer.info)
    assert [v.layer for v in imported.vectors] == [2, 3]
    assert all(v.alpha == 1.0 and v.method == "gguf" for v in imported.vectors)
    assert imported.vectors[0].source.inputs == {"file": "cv.gguf", "tensor": "direction.1"}
    assert "cv.gguf" in imported.vectors[0].summary()
    assert steerer.vectors == ()  # importing applies nothing
    with steerer.applied(vectors):
        expected = _logits(steerer.model)
    with steerer.applied(imported.vectors):
        torch.testing.assert_close(_logits(steerer.model), expected, rtol=0, atol=1e-5)
    scaled = import_control_vector(tmp_path / "cv.gguf", steerer.info, scale=-0.5)
    assert [v.alpha for v in scaled.vectors] == [-0.5, -0.5]


def test_an_imported_vector_cannot_be_recaptured_at_another_layer(steerer, tmp_path):
    export_control_vector(tmp_path / "cv.gguf", [_vector(2, 1.0, 8)], steerer.info)
    (vector,) = import_control_vector(tmp_path / "cv.gguf", steerer.info).vectors
    with pytest.raises(InvalidInputError, match="cannot be moved"):
        recapture(steerer, vector, 3)


@pytest.mark.parametrize(
    ("layer", "message"), [(0, "embeddings"), (1, "direction.0"), (4, "layers 0 to 3")]
)
def test_export_refuses_layers_llama_cpp_cannot_steer_and_writes_nothing(
    steerer, tmp_path, layer, message
):
    path = tmp_path / "cv.gguf"
    vectors = [_vector(2, 1.0, 9), _vector(layer, 1.0, 10)]
    with pytest.raises(InvalidInputError, match=message):
        export_control_vector(path, vectors, steerer.info)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(InvalidInputError, match="no active vectors"):
        export_control_vector(path, [], steerer.info)


def _write(path, directions, hint="llama", made_for=None, name=None):
    control = ControlVectorFile(name or path.name, hint, directions, made_for)
    return write_control_vector(path, control)


def test_import_takes_direction_0_as_our_layer_1_and_leaves_out_zero_directions(steerer, tmp_path):
    path = _write(tmp_path / "r.gguf", {0: torch.ones(32), 2: torch.zeros(32)})
    imported = import_control_vector(path, steerer.info)
    assert [v.layer for v in imported.vectors] == [1]
    assert "direction.2 (all zeros)" in imported.notice


def test_the_last_layers_output_is_refused_unless_left_out(steerer, tmp_path):
    # cvector-generator writes direction.1 .. direction.(n-1); the last one is
    # added after the last decoder layer, which no hook of ours reaches.
    path = _write(tmp_path / "cvgen.gguf", {i: torch.full((32,), float(i)) for i in (1, 2, 3)})
    with pytest.raises(IncompatibleVectorError, match=r"direction\.3.*last"):
        import_control_vector(path, steerer.info)
    imported = import_control_vector(path, steerer.info, skip_last_layer=True)
    assert [v.layer for v in imported.vectors] == [2, 3]
    assert "direction.3 (the last layer's output" in imported.notice


@pytest.mark.parametrize(
    ("directions", "hint", "made_for", "message"),
    [
        ({1: torch.ones(32)}, "gpt2", None, "'gpt2' model"),
        ({1: torch.ones(64)}, "llama", None, "size 64"),
        (
            {1: torch.ones(32)},
            "llama",
            {"name": "big", "hidden_size": 32, "num_layers": 8},
            "8 layers",
        ),
        ({7: torch.ones(32)}, "llama", None, "larger model"),
    ],
)
def test_import_refuses_another_architecture_size_or_layer_count(
    steerer, tmp_path, directions, hint, made_for, message
):
    path = _write(tmp_path / "x.gguf", directions, hint, made_for)
    with pytest.raises(IncompatibleVectorError, match=message):
        import_control_vector(path, steerer.info)


def test_mistral_files_from_llama_cpp_name_the_llama_architecture(steerer, tmp_path):
    from dataclasses import replace

    path = _write(tmp_path / "m.gguf", {1: torch.ones(32)}, hint="llama")
    info = replace(steerer.info, model_type="mistral")
    assert import_control_vector(path, info).vectors[0].layer == 2


def _raw_gguf(path, arch, tensors):
    writer = gguf.GGUFWriter(path, arch)
    writer.add_string(f"{arch}.model_hint", "llama")
    for name, data in tensors.items():
        writer.add_tensor(name, data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.mark.parametrize(
    ("arch", "tensors", "message"),
    [
        (ARCH, {"direction.1": np.ones(32, np.float16)}, "1-D float32"),
        (ARCH, {"direction.1": np.ones((2, 16), np.float32)}, "1-D float32"),
        (ARCH, {"blk.1.attn_q.weight": np.ones(32, np.float32)}, "only direction.N"),
        (ARCH, {"direction.1": np.full(32, np.nan, np.float32)}, "NaN"),
        (ARCH, {}, "no direction tensors"),
        ("llama", {"direction.1": np.ones(32, np.float32)}, "architecture 'llama'"),
    ],
)
def test_malformed_control_vectors_are_refused(tmp_path, arch, tensors, message):
    path = _raw_gguf(tmp_path / "bad.gguf", arch, tensors)
    with pytest.raises(VectorFileError, match=message):
        read_control_vector(path)


def test_a_model_gguf_truncated_or_garbage_file_is_a_vector_file_error(steerer, tmp_path):
    with pytest.raises(VectorFileError, match=r"architecture 'llama'.*not a control vector"):
        read_control_vector(embedded_model_folder() / EMBEDDED_GGUF)
    good = export_control_vector(tmp_path / "cv.gguf", [_vector(2, 1.0, 11)], steerer.info)
    data = (tmp_path / good.name).read_bytes()
    for size in (0, 10, 100, len(data) // 2, len(data) - 4):
        (tmp_path / "cut.gguf").write_bytes(data[:size])
        with pytest.raises(VectorFileError, match="truncated or corrupt"):
            read_control_vector(tmp_path / "cut.gguf")
    (tmp_path / "junk.gguf").write_bytes(b"not a gguf file at all" * 20)
    with pytest.raises(VectorFileError, match="truncated or corrupt"):
        read_control_vector(tmp_path / "junk.gguf")
    with pytest.raises(VectorFileError, match="not found"):
        read_control_vector(tmp_path / "missing.gguf")


def test_llama_cpp_flags_are_exact_and_survive_the_webuis_shlex_split(steerer, tmp_path):
    control = control_vector_of({5: torch.ones(32), 3: torch.ones(32)}, _info(steerer, 8))
    assert control.layer_range == (2, 4)
    flags = llama_cpp_flags("/models/my vectors/love.gguf", control)
    assert shlex.split(flags) == [
        "--control-vector", "/models/my vectors/love.gguf",
        "--control-vector-layer-range", "2", "4",
    ]
    scaled = shlex.split(llama_cpp_flags("/v/love.gguf", control, scale=0.8))
    assert scaled[:2] == ["--control-vector-scaled", "/v/love.gguf:0.8"]
    with pytest.raises(InvalidInputError, match="splits"):
        llama_cpp_flags("/v/a,b.gguf", control)


def _info(steerer, num_layers):
    from dataclasses import replace

    return replace(steerer.info, num_layers=num_layers)
