"""The documented demo (docs/demo.md) at a reduced scale on the embedded
SmolLM2: the preset's vector and search settings, the first 2 of the swarm's 5
iterations (12 evaluations), then the held-out items the search never saw.

The swarm is seeded and its first iterations do not depend on how many follow,
so these are the demo's own first 12 evaluations; the demo's best setting
(found in iteration 2) is among them. About a minute on a quiet 2-core CPU."""

from __future__ import annotations

from pathlib import Path

import pytest

from optimize import FitnessConfig, LmEvalFitness, PsoConfig, SearchSpace, run_optimization
from optimize.run.optimization import RunPlan
from presets import load_preset
from steering import capture_vector, steerer_for

# Thirteen SmolLM2 evaluations and two held-out scorings: minutes, so the full tier.
pytestmark = pytest.mark.full

TASKS = str(Path(__file__).resolve().parents[2] / "tasks")


def test_the_demo_gains_on_held_out_items(smol):
    preset = load_preset("sentiment")
    settings = preset.optimize
    steerer = steerer_for(smol.model, smol.tokenizer, smol.name)
    vector = capture_vector(
        steerer, preset.concept, preset.layer, preset.alpha, preset.contrast
    )
    steerer.set_vectors([vector])

    result = run_optimization(
        steerer,
        [0],
        RunPlan(
            LmEvalFitness(
                steerer,
                FitnessConfig(
                    settings["task"],
                    TASKS,
                    settings["metric"],
                    settings["limit"],
                    settings["batch_size"],
                ),
            ),
            SearchSpace(
                settings["layer_min"],
                settings["layer_max"],
                settings["alpha_min"],
                settings["alpha_max"],
            ),
            PsoConfig(
                particles=settings["particles"],
                iterations=2,
                c1=settings["c1"],
                c2=settings["c2"],
                w=settings["w"],
                seed=settings["seed"],
            ),
            heldout=LmEvalFitness(
                steerer,
                FitnessConfig(
                    settings["heldout_task"],
                    TASKS,
                    settings["metric"],
                    settings["heldout_limit"],
                    settings["batch_size"],
                ),
            ),
        ),
    )

    assert steerer.vectors == (vector,)  # nothing applied
    held = result.heldout
    assert held is not None and held.samples == 100 and result.samples == 50
    # the unsteered model leans to "negative" on this wording ...
    assert result.baseline.score < 0.7 and held.baseline.score < 0.7
    # ... and the setting found on the search items helps on the held-out ones
    assert result.gain_points > 0
    assert held.gain_points > 10, (result.best, held)
