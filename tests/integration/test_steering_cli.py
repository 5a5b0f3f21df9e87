"""`python -m steering` as a script would use it, run in this process
(`steering_cli`): real files, the real argument parser, exit codes and output.
A real process (signals, a missing model) is tested in test_write_failures.py."""

from __future__ import annotations

import pytest
import torch

from steering import load_vectors, steerer_for
from steering.models import load_model


@pytest.fixture
def prompt_files(tmp_path):
    joy = tmp_path / "joy.txt"
    joy.write_text("I am so happy today!\n\nWhat a wonderful day.\n")
    grief = tmp_path / "grief.txt"
    grief.write_text("I am so sad today.\nWhat a terrible day.\n")
    return joy, grief


def test_capture_then_generate_with_a_local_model(steering_cli, tiny_dir, prompt_files, tmp_path):
    joy, grief = prompt_files
    out = tmp_path / "joy.safetensors"
    done = steering_cli(
        *("capture", "--model", str(tiny_dir), "--prompts", str(joy), "--contrast", str(grief)),
        *("--layer", "2", "--alpha", "3", "--out", str(out)),
    )
    assert done.code == 0, done.err
    assert "Saved a vector at layer 2" in done.out
    loaded = load_model(str(tiny_dir))
    [vector] = load_vectors(out, steerer_for(loaded.model, loaded.tokenizer, loaded.name).info)
    assert vector.prompts == ("I am so happy today!", "What a wonderful day.")
    assert vector.contrast_prompts == ("I am so sad today.", "What a terrible day.")
    assert (vector.layer, vector.alpha) == (2, 3.0)

    done = steering_cli(
        *("generate", "--model", str(tiny_dir), "--vectors", str(out)),
        *("--prompt", "Hello there", "--max-new-tokens", "8"),
    )
    assert done.code == 0, done.err
    header = done.out.splitlines()[0]
    assert header.startswith("steered") and "| unsteered" in header


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--layer", "9", "--alpha", "1"], "Layer 9 is out of range"),
        (["--layer", "1", "--alpha", "inf"], "finite number"),
        (["--layer", "1", "--coeff", "inf"], "finite number"),  # the old name still works
        (["--layer", "1"], "capture needs --alpha"),
        (
            ["--layer", "1", "--alpha", "1", "--prompts", "/nonexistent.txt"],
            "Cannot read prompts file",
        ),
    ],
)
def test_capture_errors_exit_non_zero_without_output(
    steering_cli, tiny_dir, prompt_files, tmp_path, extra, message
):
    joy, _ = prompt_files
    out = tmp_path / "never.safetensors"
    done = steering_cli(
        "capture", "--model", str(tiny_dir), "--prompts", str(joy), *extra, "--out", str(out)
    )
    assert done.code == 2
    assert message in done.err and "Traceback" not in done.err
    assert not out.exists()


def test_deprecated_coeff_flag_is_alpha_and_hidden(steering_cli, tiny_dir, prompt_files, tmp_path):
    joy, _ = prompt_files
    out = tmp_path / "old.safetensors"
    done = steering_cli(
        *("capture", "--model", str(tiny_dir), "--prompts", str(joy), "--layer", "1"),
        *("--coeff", "-2.5", "--out", str(out)),
    )
    assert done.code == 0, done.err
    loaded = load_model(str(tiny_dir))
    [vector] = load_vectors(out, steerer_for(loaded.model, loaded.tokenizer, loaded.name).info)
    assert (vector.layer, vector.alpha, vector.method) == (1, -2.5, "mean")
    helped = steering_cli("capture", "--help")
    assert "--alpha" in helped.out and "--coeff" not in helped.out


def test_generate_refuses_a_corrupt_vector_file(steering_cli, tiny_dir, tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    done = steering_cli(
        "generate", "--model", str(tiny_dir), "--vectors", str(bad), "--prompt", "Hi"
    )
    assert done.code == 2 and "truncated or corrupt" in done.err and done.out == ""


def test_capture_with_the_embedded_model_by_default(
    steering_cli, embedded_loads, smollm2, prompt_files, tmp_path
):
    """With no --model the command loads the embedded SmolLM2 (load_model
    with no model or file); the session's SmolLM2 stands in for a second load."""
    joy, grief = prompt_files
    out = tmp_path / "joy.safetensors"
    done = steering_cli(
        *("capture", "--prompts", str(joy), "--contrast", str(grief)),
        *("--layer", "12", "--alpha", "4", "--out", str(out)),
    )
    assert done.code == 0, done.err
    assert [(model, gguf) for model, gguf, _device in embedded_loads] == [(None, None)]
    assert out.stat().st_size > 576 * 4
    [vector] = load_vectors(out, steerer_for(smollm2.model, smollm2.tokenizer, smollm2.name).info)
    assert (vector.layer, vector.alpha, vector.direction.shape) == (12, 4.0, (576,))


def test_export_gguf_import_gguf_and_generate_from_a_control_vector(
    steering_cli, tiny_dir, tmp_path
):
    from steering.extract import VectorSource
    from steering.gguf import read_control_vector
    from steering.store import save_vectors
    from steering.vector import SteeringVector

    loaded = load_model(str(tiny_dir))
    info = steerer_for(loaded.model, loaded.tokenizer, loaded.name).info
    source = VectorSource.from_prompts(["joy"])
    vectors = [
        SteeringVector(2, 1.5, torch.ones(32), source),
        SteeringVector(1, 1.0, torch.ones(32), source),
    ]
    save_vectors(tmp_path / "two.safetensors", vectors, info)
    out = tmp_path / "cv.gguf"
    done = steering_cli(
        *("export-gguf", "--model", str(tiny_dir)),
        *("--vectors", str(tmp_path / "two.safetensors"), "--out", str(out)),
    )
    assert done.code == 2 and "layer 1" in done.err and "direction.0" in done.err
    assert not out.exists()

    save_vectors(tmp_path / "one.safetensors", vectors[:1], info)
    done = steering_cli(
        *("export-gguf", "--model", str(tiny_dir)),
        *("--vectors", str(tmp_path / "one.safetensors"), "--alpha", "2", "--out", str(out)),
    )
    assert done.code == 0, done.err
    assert f"--control-vector {out} --control-vector-layer-range 1 1" in done.out
    assert torch.equal(read_control_vector(out).directions[1], torch.full((32,), 2.0))

    back = tmp_path / "back.safetensors"
    done = steering_cli(
        *("import-gguf", "--model", str(tiny_dir), "--control-vector", str(out)),
        *("--scale", "0.5", "--out", str(back)),
    )
    assert done.code == 0, done.err
    assert "Imported 1 vector(s) from cv.gguf at layer(s) 2" in done.out
    [vector] = load_vectors(back, info)
    assert (vector.layer, vector.alpha, vector.method) == (2, 0.5, "gguf")

    done = steering_cli(
        *("generate", "--model", str(tiny_dir), "--vectors", str(out)),
        *("--prompt", "Hello", "--max-new-tokens", "4"),
    )
    assert done.code == 0, done.err
    assert "Imported 1 vector(s) from cv.gguf" in done.err


def test_generate_refuses_a_prompt_past_the_context(steering_cli, tiny_dir, tiny_steerer, tmp_path):
    """`generate` refuses a prompt whose tokens and new tokens pass the
    model's context (it used to run on)."""
    from steering import capture_vector, save_vectors

    vector = capture_vector(tiny_steerer, ["sunny and warm"], 1, 2.0)
    path = save_vectors(tmp_path / "v.safetensors", [vector], tiny_steerer.info)
    prompt = "word " * 100  # the tiny model's context is 128 tokens
    done = steering_cli(
        *("generate", "--model", str(tiny_dir), "--vectors", str(path)),
        *("--prompt", prompt, "--max-new-tokens", "60"),
    )
    assert done.code == 2
    assert "with 60 new tokens it exceeds the model's context of 128" in done.err
    assert "Traceback" not in done.err
