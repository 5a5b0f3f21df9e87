"""The optimizer on the embedded SmolLM2 with the shipped local tasks: an
end-to-end run, batch-size invariance of steered scores, and the command line
(in this process, on the session's SmolLM2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from optimize import (
    FitnessConfig,
    LmEvalFitness,
    OptimizationResult,
    PsoConfig,
    SearchSpace,
    apply_best,
    run_optimization,
)
from optimize.run.optimization import RunPlan
from steering import capture_vector, recapture, save_vectors, steerer_for

REPO = Path(__file__).resolve().parents[2]
TASKS = str(REPO / "tasks")

JOY = [
    "What a wonderful, happy day.",
    "I love this, it is delightful.",
    "Great news, we are thrilled!",
]
GRIEF = [
    "What a terrible, sad day.",
    "I hate this, it is dreadful.",
    "Awful news, we are heartbroken.",
]


@pytest.fixture
def steerer(smol):
    s = steerer_for(smol.model, smol.tokenizer, smol.name)
    s.set_vectors([capture_vector(s, JOY, 12, 2.0, GRIEF)])
    return s


def test_end_to_end_run_on_a_local_task(steerer, tmp_path):
    originals, layers = steerer.vectors, steerer.steered_layers()
    seen = []
    result = run_optimization(
        steerer,
        [0],
        RunPlan(
            LmEvalFitness(
                steerer,
                FitnessConfig("steer_sentiment", include_path=TASKS, limit=10, batch_size=8),
            ),
            SearchSpace(layer_min=4, layer_max=24, alpha_min=-8.0, alpha_max=8.0),
            PsoConfig(particles=3, iterations=2, seed=0),
        ),
        on_progress=seen.append,
    )
    assert steerer.vectors == originals and steerer.steered_layers() == layers
    assert [p.done for p in seen] == list(range(1, 8))
    assert len(result.history) == 7 and not result.cancelled
    assert result.samples == 10 and result.metric == "acc,none"
    assert 0.0 <= result.baseline.score <= 1.0 and result.baseline.stderr > 0
    assert result.best.score == max(e.score for e in result.evaluations)
    assert 4 <= result.best.layers[0] <= 24 and -8 <= result.best.alphas[0] <= 8

    loaded = OptimizationResult.load(result.save(tmp_path / "run.json"))
    assert loaded.to_dict() == result.to_dict()

    applied = apply_best(steerer, result, result.best)  # a run with no confirmation: by hand
    assert (applied[0].layer, applied[0].alpha) == (result.best.layers[0], result.best.alphas[0])
    assert steerer.steered_layers() == [result.best.layers[0]]


@pytest.mark.full  # SmolLM2 scored at two batch sizes, steered and not
def test_steered_loglikelihoods_do_not_depend_on_batch_size(steerer):
    """Right-padded batches hold shorter rows next to longer ones; steering
    adds exactly alpha * V at every position, so the real positions of a row
    see the same numbers whatever shares their batch."""
    vectors = [
        recapture(steerer, steerer.vectors[0], 10).with_alpha(6.0),
        recapture(steerer, steerer.vectors[0], 18).with_alpha(-3.0),
    ]
    config = dict(task="steer_health", include_path=TASKS, limit=12)
    one = LmEvalFitness(steerer, FitnessConfig(batch_size=1, **config))
    eight = LmEvalFitness(steerer, FitnessConfig(batch_size=8, **config))
    steered_1, steered_8 = one.evaluate(vectors), eight.evaluate(vectors)
    plain_8 = eight.evaluate(())

    assert len(steered_1.responses) == len(steered_8.responses) == 48
    for (ll_1, greedy_1), (ll_8, greedy_8) in zip(
        steered_1.responses, steered_8.responses, strict=True
    ):
        assert abs(ll_1 - ll_8) < 1e-4
        assert greedy_1 == greedy_8
    assert (steered_1.score, steered_1.stderr) == (steered_8.score, steered_8.stderr)
    # the steering did reach the model
    assert (
        max(abs(a[0] - b[0]) for a, b in zip(steered_8.responses, plain_8.responses, strict=True))
        > 0.01
    )


def test_cli_writes_the_result_and_fails_cleanly(
    steerer, optimize_cli, embedded_loads, tmp_path, monkeypatch
):
    """python -m optimize with no --model: the embedded SmolLM2 (the session's
    load stands in for the command's), run in this process from tmp_path."""
    monkeypatch.chdir(tmp_path)  # where pyswarms would leave a report.log
    vectors = save_vectors(tmp_path / "joy.safetensors", steerer.vectors, steerer.info)
    out = tmp_path / "result.json"
    common = ["--vectors", str(vectors), "--include-path", TASKS, "--limit", "4", "--out", str(out)]

    bad = optimize_cli(*common, "--task", "steer_sentimnet")
    assert bad.code != 0
    assert bad.err.count("\n") == 1, bad.err
    assert "'steer_sentimnet' is not registered" in bad.err
    assert "Did you mean 'steer_sentiment'" in bad.err
    assert not out.exists()

    ok = optimize_cli(
        *common,
        *("--task", "steer_sentiment", "--particles", "2", "--iterations", "1"),
        *("--batch-size", "4", "--seed", "1", "--layer-min", "8", "--layer-max", "16"),
        *("--unit", "alpha", "--alpha-min", "-4", "--alpha-max", "4"),
    )
    assert ok.code == 0, ok.err
    data = json.loads(out.read_text())
    assert data["format"] == "steerswarm.optimization"
    # --limit 4 documents by default split: 1 held out, 2 confirm the finalists, 1 is searched
    assert data["task"] == "steer_sentiment" and data["samples"] == 1
    assert data["pso"]["particles"] == 2 and data["seed"] == 1
    assert len(data["history"]) == 3
    assert 8 <= data["best"]["layers"][0] <= 16
    assert data["gain_points"] == pytest.approx(
        100 * (data["best"]["score"] - data["baseline"]["score"])
    )
    assert "baseline" in ok.out and "saved" in ok.out
    assert "optimizing" in ok.err  # the progress bar
    assert not (tmp_path / "report.log").exists()
    assert embedded_loads and all(asked[:2] == (None, None) for asked in embedded_loads)
