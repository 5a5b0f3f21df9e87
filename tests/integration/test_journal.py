"""The run journal: whole fsynced lines, a torn last line dropped,
another run's journal refused; a run cancelled midway resumes without
scoring anything twice; and `python -m optimize` killed with SIGKILL mid-run
resumes with `--resume JOURNAL` to the history of an uninterrupted run."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from optimize import LmEvalFitness, PsoConfig, SearchSpace, run_optimization
from optimize.config.configs import FitnessConfig
from optimize.config.space import Setting
from optimize.run.journal import JournalFile, journal_path, read_journal, run_identity
from optimize.run.optimization import RunPlan
from optimize.scoring.evaluation import Evaluation
from optimize.scoring.metrics import Metrics
from steering import save_vectors
from steering.errors import InvalidInputError
from tests.support.tasks import sentiment_fitness, sentiment_run_argv

ROOT = Path(__file__).resolve().parents[2]
SPACE = SearchSpace(layer_min=1, layer_max=3, alpha_min=-30.0, alpha_max=30.0, alpha_decimals=0)


def _evaluation(layer, alpha, score=0.5, iteration=0):
    return Evaluation.scored(
        iteration, 0, Setting((layer,), (alpha,)), Metrics.of_target(score, 0.1), 0.25
    )


def _history(history):
    return [(e.iteration, e.particle, e.setting, dict(e.metrics), e.cached) for e in history]


def test_a_journal_keeps_whole_lines_drops_a_torn_one_and_refuses_another_run(tmp_path):
    path = journal_path(tmp_path / "result.json")
    assert path.name == "result.journal.jsonl"
    journal = JournalFile(path).open({"seed": 1})
    journal.record("baseline", _evaluation(0, 0.0, iteration=-1))
    journal.record("search", _evaluation(2, 1.5))
    journal.record("search", _evaluation(2, 1.5))  # already held: not appended again
    journal.record("search", dataclasses.replace(_evaluation(3, 2.0), cached=True))  # a cache hit
    journal.close()
    with open(path, "ab") as handle:
        handle.write(b'{"kind":"search","evaluation":{"iter')  # a write cut by a power loss
    state = read_journal(path)
    assert state.baseline is not None and list(state.search) == [((2,), (1.5,))]
    assert state.search[((2,), (1.5,))] == _evaluation(2, 1.5)
    with pytest.raises(InvalidInputError, match=r"already at .*--resume"):
        JournalFile(path).open({"seed": 1})
    with pytest.raises(InvalidInputError, match="from another run: its seed differ"):
        JournalFile(path, resume=True).open({"seed": 2})
    again = JournalFile(path, resume=True).open({"seed": 1})  # the torn line is cut off
    again.record("search", _evaluation(3, 2.0))
    again.close()
    assert len(path.read_text().splitlines()) == 4 and list(read_journal(path).search)[1] == (
        (3,),
        (2.0,),
    )
    (tmp_path / "other.jsonl").write_text("{}\n")
    with pytest.raises(InvalidInputError, match="not a steerswarm run journal"):
        read_journal(tmp_path / "other.jsonl")


def test_a_journal_of_a_run_with_another_guard_task_is_not_resumed(tmp_path):
    from types import SimpleNamespace

    target = FitnessConfig(task="sentiment_demo")

    def identity(guard_task):
        guard = (
            None if guard_task is None else SimpleNamespace(config=FitnessConfig(task=guard_task))
        )
        fitness = SimpleNamespace(config=target, guard_task=guard, higher_is_better=True)
        return run_identity("m", 4, [], RunPlan(fitness, SPACE, PsoConfig(), objective="guarded"))

    path = journal_path(tmp_path / "result.json")
    JournalFile(path).open(identity("health_demo")).close()
    with pytest.raises(InvalidInputError, match="from another run: its guard_task differ"):
        JournalFile(path, resume=True).open(identity("arc_easy"))
    with pytest.raises(InvalidInputError, match="from another run: its guard_task differ"):
        JournalFile(path, resume=True).open(identity(None))
    JournalFile(path, resume=True).open(identity("health_demo")).close()


def test_a_cancelled_run_resumes_to_the_same_history_scoring_nothing_twice(
    steerer, sentiment_task, tmp_path
):
    pso = PsoConfig(particles=3, iterations=3, seed=4)
    fitness = LmEvalFitness(steerer, sentiment_fitness(sentiment_task))
    whole = run_optimization(steerer, [0], RunPlan(fitness, SPACE, pso))
    calls = []

    class Counting:  # the same fitness, counting what it scores
        def __getattr__(self, name):
            return getattr(fitness, name)

        def metrics(self, vectors):
            calls.append(tuple((v.layer, v.alpha) for v in vectors))
            return fitness.metrics(vectors)

        def document_scores(self, vectors):  # the baseline's
            calls.append(tuple((v.layer, v.alpha) for v in vectors))
            return fitness.document_scores(vectors)

    cancel = threading.Event()
    journal = JournalFile(tmp_path / "run.journal.jsonl")
    part = run_optimization(
        steerer,
        [0],
        RunPlan(Counting(), SPACE, pso),
        cancel=cancel,
        journal=journal,
        on_progress=lambda p: cancel.set() if p.done == 4 else None,
    )
    assert part.cancelled and len(part.evaluations) == 3
    paid_before = len(calls)
    calls.clear()
    resumed = run_optimization(
        steerer,
        [0],
        RunPlan(Counting(), SPACE, pso),
        journal=JournalFile(journal.path, resume=True),
    )
    assert _history(resumed.history) == _history(whole.history)
    distinct = len({e.setting.key for e in whole.evaluations})
    assert paid_before == 4 and len(calls) == distinct + 1 - 4  # nothing scored twice


@pytest.fixture
def cli_run(steerer, tiny_dir, sentiment_task, tmp_path):
    vectors = save_vectors(tmp_path / "v.safetensors", steerer.vectors[:1], steerer.info)
    common = sentiment_run_argv(tiny_dir, vectors, sentiment_task)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}

    def start(*args):
        command = [sys.executable, "-m", "optimize", *common, *args]
        return subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=tmp_path,
        )

    return start


def _finish(process):
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    return out


@pytest.mark.full  # three real `python -m optimize` processes
def test_a_sigkilled_run_resumes_to_the_uninterrupted_history(cli_run, tmp_path):
    _finish(cli_run("--out", str(tmp_path / "whole.json")))
    whole = json.loads((tmp_path / "whole.json").read_text())
    assert not journal_path(tmp_path / "whole.json").exists()  # a finished run leaves none

    out = tmp_path / "killed.json"
    journal = journal_path(out)
    process = cli_run("--out", str(out))
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        if journal.exists() and len(journal.read_bytes().splitlines()) >= 3:  # header, baseline, 1
            break
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
    assert process.returncode == -signal.SIGKILL and not out.exists()
    kept = read_journal(journal)
    assert kept.baseline is not None and 1 <= len(kept.search) < 6

    resumed_output = _finish(_resume(journal))
    resumed = json.loads(out.read_text())
    assert "saved" in resumed_output and not journal.exists()

    def history(data):
        return [{k: v for k, v in e.items() if k != "seconds"} for e in data["history"]]

    assert history(resumed) == history(whole)
    assert resumed["heldout"]["best"]["metrics"] == whole["heldout"]["best"]["metrics"]
    by_key = {
        (tuple(e["layers"]), tuple(e["alphas"])): e for e in resumed["history"] if not e["cached"]
    }
    for key, evaluation in kept.search.items():  # what the killed run scored is reused as it was
        assert by_key[key]["seconds"] == evaluation.seconds


def _resume(journal):
    """`python -m optimize --resume JOURNAL` alone: the journal repeats the command."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "optimize", "--resume", str(journal)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=journal.parent,
    )


def test_without_ray_the_optimizer_imports_and_workers_say_how_to_install_it(monkeypatch, tmp_path):
    from optimize.run.assembly import RunRecipe
    from optimize.workers.ray import RayOptions, RayWorkers, WorkerError

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as if not installed
    recipe = RunRecipe("v.safetensors", b"", {"task": "tiny_sentiment"})
    with pytest.raises(
        WorkerError, match=r"Ray is not installed: pip install -r requirements/ray\.txt"
    ):
        RayWorkers(recipe, [0], RayOptions(workers=1)).start()
