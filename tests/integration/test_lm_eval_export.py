"""Export to lm-eval's own `steered` model (lm_eval/models/hf_steered.py), on
the tiny models: each of our layers becomes the module whose output enters
it (checked on the model), lm-eval's hooks then give exactly our logits,
lm-eval's steered model reproduces our fitness score on the same documents,
and an optimization's result exported with `python -m optimize
export-lm-eval` is re-scored by the lm_eval command it prints."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import pytest
import torch

from optimize import FitnessConfig, LmEvalFitness, OptimizationResult
from steering import capture_vector, recapture, save_vectors, steerer_for
from steering.errors import InvalidInputError
from steering.extract import VectorSource
from steering.lm_eval_export import export_lm_eval, hookpoints
from steering.vector import SteeringVector

TASKS = str(Path(__file__).resolve().parents[2] / "tasks")


def _vector(layer: int, alpha: float, seed: int, size: int = 32) -> SteeringVector:
    direction = torch.randn(size, generator=torch.Generator().manual_seed(seed))
    return SteeringVector(layer, alpha, direction, VectorSource.from_prompts([f"v{seed}"]))


def _steered_model(steerer, path, **kwargs):
    from lm_eval.models.hf_steered import SteeredModel

    return SteeredModel(pretrained=steerer.model, tokenizer=steerer.tokenizer,
                        steer_path=str(path), **kwargs)


def test_each_layer_is_the_output_of_the_module_before_it_and_logits_match(tiny_steerer, tmp_path):
    vectors = [_vector(0, 2.0, 1), _vector(2, 3.0, 2), _vector(2, -1.5, 3), _vector(3, 1.0, 4)]
    export = export_lm_eval(tmp_path / "steer.pt", tiny_steerer, vectors)
    assert dict(export.hookpoints) == {0: "embed_tokens", 2: "layers.1", 3: "layers.2"}
    saved = torch.load(export.path, weights_only=True)  # plain tensors and numbers only
    assert set(saved) == {"embed_tokens", "layers.1", "layers.2"}
    assert saved["layers.1"]["action"] == "add" and saved["layers.1"]["steering_coefficient"] == 1.0
    ids = torch.tensor([tiny_steerer.tokenizer("Hello world, how are you today?")["input_ids"]])
    with tiny_steerer.applied(vectors), torch.no_grad():
        ours = tiny_steerer.model(ids).logits
    theirs = _steered_model(tiny_steerer, export.path)._model_call(ids)
    assert torch.equal(ours, theirs)
    with torch.no_grad():
        assert not torch.equal(ours, tiny_steerer.model(ids).logits)  # it steers at all
    assert tiny_steerer.steered_layers() == []  # lm-eval's hooks are gone after its call


def test_gpt2_layer_0_is_refused_and_later_layers_map_to_its_blocks(tiny_gpt2, tmp_path):
    steerer = steerer_for(tiny_gpt2.model, tiny_gpt2.tokenizer, tiny_gpt2.name)
    with pytest.raises(InvalidInputError, match="not the output of its embedding module"):
        export_lm_eval(tmp_path / "steer.pt", steerer, [_vector(0, 1.0, 1)])
    assert not (tmp_path / "steer.pt").exists()
    assert hookpoints(steerer, [1, 2]) == {1: "h.0", 2: "h.1"}
    vectors = [_vector(2, 4.0, 5)]
    export = export_lm_eval(tmp_path / "steer.pt", steerer, vectors)
    ids = torch.tensor([tiny_gpt2.tokenizer("Hello world")["input_ids"]])
    with steerer.applied(vectors), torch.no_grad():
        ours = tiny_gpt2.model(ids).logits
    assert torch.equal(ours, _steered_model(steerer, export.path)._model_call(ids))


@pytest.mark.parametrize(
    ("name", "needle"),
    [("steer.csv", "only the .pt format holds"), ("steer.json", "reads .pt or .pth")],
)
def test_only_a_pt_file_is_written(tiny_steerer, tmp_path, name, needle):
    with pytest.raises(InvalidInputError, match=needle):
        export_lm_eval(tmp_path / name, tiny_steerer, [_vector(1, 1.0, 1)])
    assert list(tmp_path.iterdir()) == []


def test_lm_evals_steered_model_reproduces_our_fitness_score(tiny_steerer, tmp_path):
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    vectors = [_vector(1, 6.0, 7), _vector(2, -4.0, 8)]
    config = FitnessConfig(task="steer_sentiment", include_path=TASKS, limit=16, batch_size=4)
    fitness = LmEvalFitness(tiny_steerer, config)
    ours = fitness.evaluate(vectors)
    assert ours.responses != fitness.evaluate(()).responses  # the setting steers
    export = export_lm_eval(tmp_path / "steer.pt", tiny_steerer, vectors)
    model_args = {
        "pretrained": tiny_steerer.model,
        "tokenizer": tiny_steerer.tokenizer,
        "steer_path": str(export.path),
    }
    results = simple_evaluate(
        model="steered",
        model_args=model_args,
        tasks=["steer_sentiment"],
        task_manager=TaskManager(include_path=TASKS, include_defaults=False),
        samples=fitness.document_ids(),
        batch_size=4,
        log_samples=True,
        bootstrap_iters=0,
        random_seed=None,
        numpy_random_seed=None,
        torch_random_seed=None,
    )
    theirs = results["results"]["steer_sentiment"]["acc,none"]
    assert theirs == pytest.approx(ours.score, abs=1e-4) and theirs == ours.score
    samples = sorted(results["samples"]["steer_sentiment"], key=lambda s: s["doc_id"])
    assert [s["acc"] for s in samples] == list(ours.per_document)
    their_lls = [resp[0][0] for s in samples for resp in s["resps"]]
    our_lls = [answer[0] for answer in ours.responses]
    assert their_lls == pytest.approx(our_lls, abs=1e-4)


def test_the_steering_command_writes_the_file_and_prints_the_lm_eval_command(
    tiny, tiny_dir, tmp_path, capsys
):
    from steering.__main__ import main

    steerer = steerer_for(tiny.model, tiny.tokenizer, tiny.name)
    save_vectors(tmp_path / "v.safetensors", [_vector(2, 3.0, 1)], steerer.info)
    out = tmp_path / "steer.pt"
    code = main(["export-lm-eval", "--vectors", str(tmp_path / "v.safetensors"), "--out", str(out),
                 "--model", str(tiny_dir), "--alpha", "5",
                 "--task", "steer_sentiment"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "our layer 2 -> layers.1" in printed
    command = shlex.split(printed.splitlines()[-1])
    assert command[:4] == ["lm_eval", "--model", "steered", "--model_args"]
    assert command[4] == f"pretrained={tiny_dir},steer_path={out}"
    assert command[5:] == ["--tasks", "steer_sentiment"]
    saved = torch.load(out, weights_only=True)["layers.1"]["steering_vector"]
    assert torch.equal(saved, 5.0 * _vector(2, 3.0, 1).direction)
    assert main(["export-lm-eval", "--vectors", str(tmp_path / "v.safetensors"),
                 "--out", str(tmp_path / "steer.csv"), "--model", str(tiny_dir)]) == 2
    assert "only the .pt format holds" in capsys.readouterr().err


def test_a_results_setting_is_rescored_by_the_printed_lm_eval_command(
    tiny, tiny_dir, tmp_path, capsys, monkeypatch
):
    """A real (tiny) optimization run; its best setting exported; the exact
    lm_eval command printed, run by lm-eval's own command line, scores what
    the result recorded for that setting, on the documents it scored."""
    from lm_eval._cli import HarnessCLI

    from optimize.cli import main

    steerer = steerer_for(tiny.model, tiny.tokenizer, tiny.name)
    joy = capture_vector(steerer, ["I love it", "so happy"], 1, 4.0, ["I hate it", "so sad"])
    save_vectors(tmp_path / "joy.safetensors", [joy], steerer.info)
    result_path = tmp_path / "result.json"
    run = ["--vectors", str(tmp_path / "joy.safetensors"), "--task", "steer_sentiment",
           "--include-path", TASKS, "--limit", "16", "--particles", "3", "--iterations", "2",
           "--alpha-min", "-30", "--alpha-max", "30", "--unit", "alpha", "--batch-size", "4",
           "--out", str(result_path), "--model", str(tiny_dir), "--quiet"]
    assert main(run) == 0, capsys.readouterr()
    result = OptimizationResult.load(result_path)
    assert result.split is not None  # the run searched part of the documents
    capsys.readouterr()
    out = tmp_path / "steer.pt"
    export = ["export-lm-eval", "--result", str(result_path), "--vectors",
              str(tmp_path / "joy.safetensors"), "--out", str(out), "--model", str(tiny_dir),
              "--best"]
    assert main(export) == 0
    printed = capsys.readouterr().out
    assert f"scored acc {result.best.score:.4f}" in printed, printed
    command = shlex.split(printed.splitlines()[-1])
    assert command[0] == "lm_eval" and "--samples" in command
    logs = tmp_path / "lm-eval"
    monkeypatch.setattr(sys, "argv", [*command, "--output_path", str(logs), "--log_samples"])
    cli = HarnessCLI()
    cli.execute(cli.parse_args())
    written = next(logs.rglob("results_*.json"))
    score = json.loads(written.read_text())["results"]["steer_sentiment"]["acc,none"]
    assert score == pytest.approx(result.best.score, abs=1e-4) and score == result.best.score
    # and per answer: lm-eval's loglikelihoods are those of the best setting, built
    # here from the result's record (the vector recaptured at its layer, its alpha)
    lines = next(logs.rglob("samples_steer_sentiment_*.jsonl")).read_text().splitlines()
    samples = sorted((json.loads(line) for line in lines), key=lambda s: s["doc_id"])
    theirs = [float(resp[0][0]) for s in samples for resp in s["resps"]]  # logged as text
    (layer,), (alpha,) = result.best.layers, result.best.alphas
    setting = [recapture(steerer, joy, layer).with_alpha(alpha)]
    fitness = LmEvalFitness(steerer, result.fitness, split=result.split)
    ours = [answer[0] for answer in fitness.evaluate(setting).responses]
    assert theirs == pytest.approx(ours, abs=1e-4)
    unsteered = [answer[0] for answer in fitness.evaluate(()).responses]
    assert theirs != pytest.approx(unsteered, abs=1e-4)
