"""The Steering tab's GGUF side on the tiny model: Export for llama.cpp (file,
flags, refusals that write nothing) and Load vectors with a .gguf file
(imported, or refused with the active vectors unchanged)."""

from __future__ import annotations

import shlex

import gradio as gr
import pytest
import torch

from steering.extract import VectorSource
from steering.gguf import ControlVectorFile, read_control_vector, write_control_vector
from steering.models import EMBEDDED_GGUF, embedded_model_folder
from steering.vector import SteeringVector
from ui import format as fmt
from ui.gguf_panel import GgufActions
from ui.steering_tab import SteeringActions, build


def last(gen):
    values = list(gen)
    assert values, "the handler yielded nothing"
    return values[-1]


def _vector(layer: int, alpha: float) -> SteeringVector:
    return SteeringVector(layer, alpha, torch.ones(32), VectorSource.from_prompts(["x"]))


@pytest.fixture
def steerer(tiny_session):
    return tiny_session.current().steerer


def test_export_writes_the_file_and_shows_the_exact_flags(tiny_session, steerer, tmp_path):
    steerer.set_vectors([_vector(2, 1.5), _vector(3, -1.0)])
    file, flags, status = last(
        GgufActions(tiny_session, tmp_path).export("love vectors.safetensors")
    )
    path = tmp_path / "love-vectors.gguf"
    assert file == {"__type__": "update", "value": str(path), "visible": True}
    assert shlex.split(flags["value"]) == [
        "--control-vector", str(path), "--control-vector-layer-range", "1", "2",
    ]
    assert status.startswith(f"✓ Exported 2 vector(s) for llama.cpp to {fmt.md(path)}"), status
    assert sorted(read_control_vector(path).directions) == [1, 2]


@pytest.mark.parametrize(
    ("vectors", "name", "needle"),
    [
        ((), "v", "no active vectors"),
        ((1,), "v", "direction.0"),
        ((2,), " ", "Give the file a name"),
    ],
)
def test_a_refused_export_writes_nothing_and_changes_no_vector(
    tiny_session, steerer, tmp_path, vectors, name, needle
):
    steerer.set_vectors([_vector(layer, 1.0) for layer in vectors])
    before = steerer.vectors
    file, flags, status = last(GgufActions(tiny_session, tmp_path).export(name))
    assert status.startswith("⚠ Could not export for llama.cpp") and needle in status, status
    assert file == flags == {"__type__": "update"}
    assert list(tmp_path.iterdir()) == [] and steerer.vectors == before


def test_load_vectors_imports_a_gguf_and_leaves_out_the_last_layer(tiny_session, steerer, tmp_path):
    steerer.set_vectors([_vector(2, 1.0)])
    path = write_control_vector(
        tmp_path / "cvgen.gguf",
        ControlVectorFile(
            "cvgen.gguf", "llama", {i: torch.full((32,), float(i)) for i in (1, 2, 3)}
        ),
    )
    table, _choices, status = last(SteeringActions(tiny_session, tmp_path).load_vectors(str(path)))
    assert status.startswith("✓ Imported 2 vector(s) from cvgen.gguf at layer(s) 2, 3."), status
    assert "Left out: direction.3" in status and "replace the 1 that were active" in status
    assert [(v.layer, v.alpha, v.method) for v in steerer.vectors] == [
        (2, 1.0, "gguf"),
        (3, 1.0, "gguf"),
    ]
    assert len(table) == 2 and "cvgen.gguf" in str(table)


def test_load_vectors_refuses_a_model_gguf_and_keeps_the_active_vectors(
    tiny_session, steerer, tmp_path
):
    steerer.set_vectors([_vector(2, 1.0)])
    before = steerer.vectors
    _, _, status = last(
        SteeringActions(tiny_session, tmp_path).load_vectors(
            str(embedded_model_folder() / EMBEDDED_GGUF)
        )
    )
    assert status.startswith("⚠ Could not load the vectors") and "not a control vector" in status
    assert steerer.vectors == before


def test_the_tab_has_the_llama_cpp_panel_and_accepts_gguf_uploads(tiny_session, tmp_path):
    with gr.Blocks():
        tab = build(SteeringActions(tiny_session, tmp_path))
    assert ".gguf" in tab.load_file.file_types
    assert tab.gguf.export.value == "Export for llama.cpp"
    assert tab.gguf.flags.visible is False
    assert tab.gguf.export_lm_eval.value == "Export for lm-eval"
    assert tab.gguf.lm_eval_command.visible is False


def test_export_for_lm_eval_writes_the_steer_file_and_shows_the_command(
    tiny_session, steerer, tmp_path
):
    """Beside Export for llama.cpp: the active vectors as lm-eval's .pt steer
    file (steering/lm_eval_export.py), and the lm_eval command using it."""
    steerer.set_vectors([_vector(0, 1.5), _vector(2, -1.0)])
    file, command, status = last(GgufActions(tiny_session, tmp_path).export_lm_eval("love"))
    path = tmp_path / "love.pt"
    assert file == {"__type__": "update", "value": str(path), "visible": True}
    words = shlex.split(command["value"])
    assert words[:3] == ["lm_eval", "--model", "steered"]
    assert words[4] == f"pretrained=tiny-llama,steer_path={path}"
    assert status.startswith(f"✓ Exported 2 vector(s) for lm-eval to {fmt.md(path)}"), status
    assert "layer 0 → embed_tokens, layer 2 → layers.1" in status, status
    saved = torch.load(path, weights_only=True)
    assert torch.equal(saved["layers.1"]["steering_vector"], -1.0 * torch.ones(32))


def test_a_refused_lm_eval_export_writes_nothing(tiny_session, steerer, tmp_path):
    before = steerer.vectors
    for name in ("v", " "):
        file, command, status = last(GgufActions(tiny_session, tmp_path).export_lm_eval(name))
        assert status.startswith("⚠ Could not export for lm-eval"), status
        assert file == command == {"__type__": "update"}
    assert list(tmp_path.iterdir()) == [] and steerer.vectors == before
