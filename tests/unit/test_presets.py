"""The shipped example (presets/sentiment) and the demo's tasks: the preset
reads, its settings are valid, and the search and held-out items never overlap."""

from __future__ import annotations

import difflib
import json
import re
from pathlib import Path

import pytest

from optimize import FitnessConfig, PsoConfig, SearchSpace
from optimize.scoring.fitness import find_task
from presets import OPTIMIZE_KEYS, load_preset
from steering.errors import InvalidInputError

ROOT = Path(__file__).resolve().parents[2]
TASKS = ROOT / "tasks"
SENTIMENT = TASKS / "steer_sentiment"


def _items(name):
    return [json.loads(line) for line in (SENTIMENT / name).read_text().splitlines() if line]


def test_the_sentiment_preset_is_complete_and_valid():
    preset = load_preset("sentiment")
    assert preset.model == "SmolLM2-135M-Instruct"
    assert len(preset.concept) == len(preset.contrast) == 6
    assert (preset.layer, preset.alpha) == (8, 1.0)
    settings = preset.optimize
    assert set(OPTIMIZE_KEYS) <= set(settings)
    search = FitnessConfig(
        settings["task"], str(TASKS), settings["metric"], settings["limit"], settings["batch_size"]
    )
    heldout = FitnessConfig(settings["heldout_task"], str(TASKS), limit=settings["heldout_limit"])
    for config in (search, heldout):
        find_task(config)  # registered in the shipped task folder
    SearchSpace(
        settings["layer_min"], settings["layer_max"], settings["alpha_min"], settings["alpha_max"]
    ).check_model(30)
    pso = PsoConfig(
        **{k: settings[k] for k in ("particles", "iterations", "c1", "c2", "w", "seed")}
    )
    assert pso.evaluations == 30


def test_a_missing_or_broken_preset_fails_clearly(tmp_path):
    with pytest.raises(InvalidInputError, match="There is no preset 'nope'"):
        load_preset("nope")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "preset.json").write_text('{"name": "bad"}')
    with pytest.raises(InvalidInputError, match="is incomplete"):
        load_preset("bad", tmp_path)


def test_search_and_held_out_items_never_overlap():
    search, heldout = _items("data.jsonl"), _items("heldout.jsonl")
    assert len(search) == len(heldout) == 100
    assert sum(r["label"] for r in heldout) == 50  # 50 positive, 50 negative
    assert all(r["label"] == (r["sentiment"] == "negative") for r in search + heldout)
    assert not {r["id"] for r in search} & {r["id"] for r in heldout}
    assert len({r["text"] for r in search + heldout}) == 200
    # and no held-out item is a near copy of a search item or of a preset prompt
    preset = load_preset("sentiment")
    others = [r["text"].lower() for r in search] + [
        p.lower() for p in preset.concept + preset.contrast
    ]

    def words(text):
        return set(re.findall(r"[a-z']+", text))

    for item in heldout:
        text = item["text"].lower()
        for other in others:
            assert difflib.SequenceMatcher(None, text, other).ratio() < 0.75, (text, other)
            overlap = len(words(text) & words(other)) / len(words(text) | words(other))
            assert overlap < 0.5, (text, other)


def test_the_demo_tasks_share_one_wording_and_the_loader():
    search = (TASKS / "sentiment_search.yaml").read_text()
    heldout = (TASKS / "sentiment_heldout.yaml").read_text()
    wording = "Is the tone of this text positive or negative?"
    for yaml in (search, heldout):
        assert wording in yaml and "custom_dataset: !function utils.load_local_dataset" in yaml
    assert "test: steer_sentiment/data.jsonl" in search
    assert "test: steer_sentiment/heldout.jsonl" in heldout
