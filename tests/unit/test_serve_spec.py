"""The API request's `steering` field (steering/serving/spec.py), without a
model: what each accepted form means, EasySteer's names that mean the same,
and a typed error naming the field for everything else."""

from __future__ import annotations

import math

import pytest

from steering.errors import RequestFieldError
from steering.limits import MAX_VECTORS_PER_REQUEST
from steering.serving.spec import CHOSEN, DEFAULT, NONE, VectorChoice, parse_steering


def test_absent_means_the_active_vectors_and_false_means_none():
    assert parse_steering(None).mode == DEFAULT
    assert parse_steering(False).mode == NONE
    assert parse_steering({"vectors": []}).mode == NONE


def test_vectors_by_name_or_id_with_layer_and_amount():
    choice = parse_steering(
        {
            "vectors": [
                {"name": "joy", "layer": 12, "strength": 0.3},
                {"id": "3f2a9c0d4e1b", "alpha": -4},
                {"name": "calm#2"},
            ]
        }
    )
    assert choice.mode == CHOSEN
    assert choice.vectors == (
        VectorChoice(name="joy", layer=12, strength=0.3, param="steering.vectors[0]"),
        VectorChoice(vector_id="3f2a9c0d4e1b", alpha=-4.0, param="steering.vectors[1]"),
        VectorChoice(name="calm#2", param="steering.vectors[2]"),
    )


def test_easysteer_names_that_mean_the_same_are_taken():
    """EasySteer's README request, with a saved file's name as its source:
    scale is our alpha, and the direct algorithm on every position (both
    spellings of its apply clause) is what steerswarm always does."""
    for apply in ({"phases": ["prompt", "generation"]}, {"prompt": "all", "generation": "all"}):
        choice = parse_steering(
            {
                "vectors": [
                    {"source": "happy", "algorithm": "direct", "scale": 2.0, "layer": 10,
                     "normalize": False, "apply": apply, "params": {}},
                ],
                "conflict": "sequential",
            }
        )
        assert choice.vectors == (VectorChoice(name="happy", layer=10, alpha=2.0,
                                               param="steering.vectors[0]"),)


@pytest.mark.parametrize(
    ("value", "param", "needle"),
    [
        (True, "steering", "false (no steering)"),
        ("joy", "steering", "must be an object"),
        ({"vectors": "joy"}, "steering.vectors", "must be a list"),
        ({"vectors": [{"name": "joy"}], "mode": "x"}, "steering.mode", "unknown field"),
        ({"vectors": [{}]}, "steering.vectors[0]", "exactly one of id, name or source"),
        ({"vectors": [{"id": "a", "name": "b"}]}, "steering.vectors[0]", "exactly one of"),
        ({"vectors": [{"name": ""}]}, "steering.vectors[0].name", "non-empty text"),
        ({"vectors": [{"name": 7}]}, "steering.vectors[0].name", "non-empty text"),
        ({"vectors": [{"name": "j", "strength": math.nan}]}, "steering.vectors[0].strength",
         "finite number"),
        ({"vectors": [{"name": "j", "strength": math.inf}]}, "steering.vectors[0].strength",
         "finite number"),
        ({"vectors": [{"name": "j", "strength": 9}]}, "steering.vectors[0].strength",
         "between -8 and 8"),
        ({"vectors": [{"name": "j", "alpha": 101}]}, "steering.vectors[0].alpha",
         "between -100 and 100"),
        ({"vectors": [{"name": "j", "alpha": "2"}]}, "steering.vectors[0].alpha", "a number"),
        ({"vectors": [{"name": "j", "alpha": True}]}, "steering.vectors[0].alpha", "a number"),
        ({"vectors": [{"name": "j", "alpha": 1, "strength": 1}]}, "steering.vectors[0]",
         "at most one of alpha, strength and scale"),
        ({"vectors": [{"name": "j", "alpha": 1, "scale": 1}]}, "steering.vectors[0]",
         "at most one of"),
        ({"vectors": [{"name": "j", "layer": -1}]}, "steering.vectors[0].layer", ">= 0"),
        ({"vectors": [{"name": "j", "layer": 1.5}]}, "steering.vectors[0].layer", "whole"),
        ({"vectors": [{"name": "j", "layers": [10, 11]}]}, "steering.vectors[0].layers",
         "EasySteer's layer L - 1"),
        ({"vectors": [{"name": "j", "algorithm": "linear"}]}, "steering.vectors[0].algorithm",
         "'direct'"),
        ({"vectors": [{"name": "j", "normalize": True}]}, "steering.vectors[0].normalize",
         "strength"),
        ({"vectors": [{"name": "j", "params": {"mode": "soft"}}]}, "steering.vectors[0].params",
         "must be empty"),
        ({"vectors": [{"name": "j", "apply": {"phases": ["generation"]}}]},
         "steering.vectors[0].apply", "every prompt and generated token"),
        ({"vectors": [{"name": "j", "apply": {"phases": ["prompt", "generation"],
                                              "prompt_window": [-4, None]}}]},
         "steering.vectors[0].apply", "every prompt and generated token"),
        ({"vectors": [{"name": "j"}], "conflict": "priority"}, "steering.conflict",
         "'sequential'"),
        ({"vectors": [{"name": "j"}] * (MAX_VECTORS_PER_REQUEST + 1)}, "steering.vectors",
         f"at most {MAX_VECTORS_PER_REQUEST}"),
    ],
)
def test_bad_steering_is_refused_naming_the_field(value, param, needle):
    with pytest.raises(RequestFieldError) as caught:
        parse_steering(value)
    assert caught.value.param == param
    assert needle in str(caught.value), str(caught.value)
