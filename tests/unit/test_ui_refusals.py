"""In the UI, a typed layer out of range is refused, not
clamped (a second optimization is covered by tests/integration/test_ui_optimize.py, the
job registry's tests)."""

from __future__ import annotations

import gradio as gr
import pytest

from tests.support.forms import last
from ui.app import build_app
from ui.steering_tab import SteeringActions


def test_a_typed_layer_out_of_range_is_refused_not_clamped(tiny_session, tmp_path):
    app = build_app(tiny_session, tmp_path)
    [layer] = [b for b in app.blocks.values() if isinstance(b, gr.Number) and b.label == "Layer"]
    for typed in (-1, 4, 30, 1000):
        with pytest.raises(gr.Error, match=r"(less than minimum|greater than maximum)"):
            layer.preprocess(typed)
    assert layer.preprocess(3) == 3
    actions = SteeringActions(tiny_session, tmp_path)
    status = last(actions.add_vector("happy", "", 2.5, 1.0))[2]
    assert "Layer must be a whole number, got 2.5" in status
    status = last(actions.add_vector("happy", "", 30, 1.0))[2]
    assert "Layer 30 is out of range: this model has layers 0 to 3" in status
    assert tiny_session.current().steerer.vectors == ()
