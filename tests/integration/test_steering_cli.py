"""`python -m steering` as a script would use it: real processes, real files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from steering import load_vectors, steerer_for
from steering.models import load_model

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "steering", *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=300)


@pytest.fixture
def prompt_files(tmp_path):
    joy = tmp_path / "joy.txt"
    joy.write_text("I am so happy today!\n\nWhat a wonderful day.\n")
    grief = tmp_path / "grief.txt"
    grief.write_text("I am so sad today.\nWhat a terrible day.\n")
    return joy, grief


def test_capture_then_generate_with_a_local_model(tiny_dir, prompt_files, tmp_path):
    joy, grief = prompt_files
    out = tmp_path / "joy.safetensors"
    done = run_cli("capture", "--model", str(tiny_dir), "--prompts", str(joy), "--contrast", str(grief),
                   "--layer", "2", "--alpha", "3", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "Saved a vector at layer 2" in done.stdout
    loaded = load_model(str(tiny_dir))
    [vector] = load_vectors(out, steerer_for(loaded.model, loaded.tokenizer, loaded.name).info)
    assert vector.prompts == ("I am so happy today!", "What a wonderful day.")
    assert vector.contrast_prompts == ("I am so sad today.", "What a terrible day.")
    assert (vector.layer, vector.alpha) == (2, 3.0)

    done = run_cli("generate", "--model", str(tiny_dir), "--vectors", str(out), "--prompt", "Hello there",
                   "--max-new-tokens", "8")
    assert done.returncode == 0, done.stderr
    header = done.stdout.splitlines()[0]
    assert header.startswith("steered") and "| unsteered" in header


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--layer", "9", "--alpha", "1"], "Layer 9 is out of range"),
        (["--layer", "1", "--alpha", "inf"], "finite number"),
        (["--layer", "1", "--coeff", "inf"], "finite number"),  # the old name still works
        (["--layer", "1"], "capture needs --alpha"),
        (["--layer", "1", "--alpha", "1", "--prompts", "/nonexistent.txt"], "Cannot read prompts file"),
    ],
)
def test_capture_errors_exit_non_zero_without_output(tiny_dir, prompt_files, tmp_path, extra, message):
    joy, _ = prompt_files
    out = tmp_path / "never.safetensors"
    done = run_cli("capture", "--model", str(tiny_dir), "--prompts", str(joy), *extra, "--out", str(out))
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr
    assert not out.exists()


def test_deprecated_coeff_flag_is_alpha_and_hidden(tiny_dir, prompt_files, tmp_path):
    joy, _ = prompt_files
    out = tmp_path / "old.safetensors"
    done = run_cli("capture", "--model", str(tiny_dir), "--prompts", str(joy), "--layer", "1",
                   "--coeff", "-2.5", "--out", str(out))
    assert done.returncode == 0, done.stderr
    loaded = load_model(str(tiny_dir))
    [vector] = load_vectors(out, steerer_for(loaded.model, loaded.tokenizer, loaded.name).info)
    assert (vector.layer, vector.alpha, vector.method) == (1, -2.5, "mean")
    helped = run_cli("capture", "--help")
    assert "--alpha" in helped.stdout and "--coeff" not in helped.stdout


def test_generate_refuses_a_corrupt_vector_file(tiny_dir, tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    done = run_cli("generate", "--model", str(tiny_dir), "--vectors", str(bad), "--prompt", "Hi")
    assert done.returncode == 2 and "truncated or corrupt" in done.stderr and done.stdout == ""


def test_capture_with_the_embedded_model_by_default(prompt_files, tmp_path):
    joy, grief = prompt_files
    out = tmp_path / "joy.safetensors"
    done = run_cli("capture", "--prompts", str(joy), "--contrast", str(grief), "--layer", "12",
                   "--alpha", "4", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert out.stat().st_size > 576 * 4


def test_export_gguf_import_gguf_and_generate_from_a_control_vector(tiny_dir, tmp_path):
    from steering.extract import VectorSource
    from steering.gguf import read_control_vector
    from steering.store import save_vectors
    from steering.vector import SteeringVector

    loaded = load_model(str(tiny_dir))
    info = steerer_for(loaded.model, loaded.tokenizer, loaded.name).info
    source = VectorSource.from_prompts(["joy"])
    vectors = [SteeringVector(2, 1.5, torch.ones(32), source), SteeringVector(1, 1.0, torch.ones(32), source)]
    save_vectors(tmp_path / "two.safetensors", vectors, info)
    out = tmp_path / "cv.gguf"
    done = run_cli("export-gguf", "--model", str(tiny_dir), "--vectors", str(tmp_path / "two.safetensors"),
                   "--out", str(out))
    assert done.returncode == 2 and "layer 1" in done.stderr and "direction.0" in done.stderr
    assert not out.exists()

    save_vectors(tmp_path / "one.safetensors", vectors[:1], info)
    done = run_cli("export-gguf", "--model", str(tiny_dir), "--vectors", str(tmp_path / "one.safetensors"),
                   "--alpha", "2", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert f"--control-vector {out} --control-vector-layer-range 1 1" in done.stdout
    assert torch.equal(read_control_vector(out).directions[1], torch.full((32,), 2.0))

    back = tmp_path / "back.safetensors"
    done = run_cli("import-gguf", "--model", str(tiny_dir), "--control-vector", str(out), "--scale", "0.5",
                   "--out", str(back))
    assert done.returncode == 0, done.stderr
    assert "Imported 1 vector(s) from cv.gguf at layer(s) 2" in done.stdout
    [vector] = load_vectors(back, info)
    assert (vector.layer, vector.alpha, vector.method) == (2, 0.5, "gguf")

    done = run_cli("generate", "--model", str(tiny_dir), "--vectors", str(out), "--prompt", "Hello",
                   "--max-new-tokens", "4")
    assert done.returncode == 0, done.stderr
    assert "Imported 1 vector(s) from cv.gguf" in done.stderr


def test_generate_refuses_a_prompt_past_the_context(tiny_dir, tiny_steerer, tmp_path, capsys):
    """Issue 17: `generate` with a prompt past the context ran on; it is refused."""
    import steering.__main__ as cli
    from steering import capture_vector, save_vectors

    vector = capture_vector(tiny_steerer, ["sunny and warm"], 1, 2.0)
    path = save_vectors(tmp_path / "v.safetensors", [vector], tiny_steerer.info)
    prompt = "word " * 100  # the tiny model's context is 128 tokens
    assert cli.main(["generate", "--model", str(tiny_dir), "--vectors", str(path), "--prompt", prompt,
                     "--max-new-tokens", "60"]) == 2
    err = capsys.readouterr().err
    assert "with 60 new tokens it exceeds the model's context of 128" in err and "Traceback" not in err
