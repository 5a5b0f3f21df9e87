"""The session follows model changes (the webui may swap or unload the model)."""

from __future__ import annotations

import pytest

from steering import NoModelError, UnsupportedModelError, capture_vector
from steering.models import LoadedModel
from steering.session import ModelSession


class Holder:
    """Stands in for the webui's modules.shared: the model can change under us."""

    def __init__(self, loaded):
        self.loaded = loaded

    def __call__(self):
        return self.loaded


def test_no_model_is_a_clear_error():
    with pytest.raises(NoModelError, match="No model is loaded"):
        ModelSession(lambda: None).current()


def test_same_model_same_steerer_and_no_notice(tiny):
    session = ModelSession(Holder(tiny))
    first, second = session.current(), session.current()
    assert first.steerer is second.steerer and second.notice == ""


def test_swapped_model_keeps_vectors_that_fit_and_drops_the_rest(tiny, tiny_factory, tiny_gpt2):
    holder = Holder(tiny)
    session = ModelSession(holder)
    old = session.current().steerer
    vector = capture_vector(old, ["a bright morning"], 3, 2.0)
    old.add(vector)

    holder.loaded = tiny_factory(7)  # same size: the vector fits
    current = session.current()
    assert current.steerer is not old
    assert current.steerer.vectors == (vector,) and old.vectors == () and old.steered_layers() == []
    assert "Kept 1 vector" in current.notice

    holder.loaded = tiny_gpt2  # 3 layers: a layer-3 vector does not fit
    current = session.current()
    assert current.steerer.vectors == ()
    assert "Dropped 1 vector" in current.notice and "a bright morning" in current.notice


def test_unloaded_then_non_transformers_model(tiny):
    holder = Holder(tiny)
    session = ModelSession(holder)
    session.current()
    holder.loaded = None
    with pytest.raises(NoModelError):
        session.current()
    holder.loaded = LoadedModel(
        model=type("LlamaServer", (), {})(), tokenizer=None, name="gguf-via-llama.cpp"
    )
    with pytest.raises(UnsupportedModelError, match="Transformers loader"):
        session.current()


def test_vectors_survive_an_unload_and_come_back_on_the_next_model(tiny, tiny_factory):
    holder = Holder(tiny)
    session = ModelSession(holder)
    steerer = session.current().steerer
    vector = capture_vector(steerer, ["a bright morning"], 2, 2.0)
    steerer.add(vector)
    holder.loaded = None
    with pytest.raises(NoModelError):
        session.current()
    assert steerer.steered_layers() == []  # the unloaded model is left clean
    holder.loaded = tiny_factory(3)
    current = session.current()
    assert current.steerer.vectors == (vector,) and "Kept 1 vector" in current.notice
