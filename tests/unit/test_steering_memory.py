"""The steering state never keeps a model alive.

text-generation-webui unloads a model by dropping its reference and collecting
garbage to free the (GPU) memory before it loads the next one. If anything of
ours held the old model, every switch would leak a whole model's weights.
"""

from __future__ import annotations

import gc
import weakref

import pytest
import torch

from steering import steerer_for
from steering.capture import capture_vector
from steering.errors import NoModelError
from steering.models import LoadedModel
from steering.session import ModelSession


def _add_vector(session: ModelSession, layer: int = 1) -> None:
    current = session.current()
    current.steerer.add(capture_vector(current.steerer, ["a good day"], layer, 2.0, ["a bad day"]))


def test_a_steered_model_is_freed_once_its_owner_drops_it(tiny_factory):
    holder: dict[str, LoadedModel | None] = {"model": tiny_factory(0)}
    gone = weakref.ref(holder["model"].model)  # type: ignore[union-attr]
    session = ModelSession(lambda: holder["model"])
    _add_vector(session)
    current = session.current()
    current.loaded.model(torch.tensor([[1, 2, 3]]))  # run it steered once
    assert current.steerer.steered_layers() == [1]
    del current

    holder["model"] = None  # what the webui's unload does, before we hear of it
    gc.collect()
    assert gone() is None


def test_vectors_of_a_freed_model_carry_over_to_the_next(tiny_factory):
    holder: dict[str, LoadedModel | None] = {"model": tiny_factory(0)}
    session = ModelSession(lambda: holder["model"])
    _add_vector(session, layer=2)
    holder["model"] = None
    gc.collect()
    with pytest.raises(NoModelError):
        session.current()

    holder["model"] = tiny_factory(1)
    current = session.current()
    assert current.notice.startswith("The model changed to tiny-llama-1. Kept 1 vector(s)")
    assert [v.layer for v in current.steerer.vectors] == [2]
    assert current.steerer.steered_layers() == [2]


def test_a_steerer_whose_model_is_gone_says_so(tiny_factory):
    loaded = tiny_factory(0)
    steerer = steerer_for(loaded.model, loaded.tokenizer, loaded.name)
    assert steerer.model is loaded.model
    del loaded
    gc.collect()
    with pytest.raises(NoModelError, match="The model was unloaded"):
        steerer.model  # noqa: B018


def test_a_replaced_model_that_lives_on_is_left_unsteered(tiny_factory):
    """A LoRA wraps the same model; dropping it hands the base model back: the
    model that is no longer current keeps no hooks of ours."""
    first, second = tiny_factory(0), tiny_factory(1)
    holder = {"model": first}
    session = ModelSession(lambda: holder["model"])
    _add_vector(session)
    holder["model"] = second
    current = session.current()
    assert steerer_for(first.model, first.tokenizer).steered_layers() == []
    assert current.steerer.steered_layers() == [1]
    current.steerer.reset()
