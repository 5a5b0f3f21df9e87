"""The Optimize tab's concept-strength objective and strength bounds on the
tiny model (no task scored): the handler class, no browser."""

from __future__ import annotations

import pytest

from optimize.settings import BY_NAME
from steering.errors import InvalidInputError
from ui.optimize_form import NAMES, parse_request
from ui.optimize_tab import TASKS_DIR



def _values(**changes):
    values = {f: BY_NAME[f].default for f in NAMES}
    values.update(task_folder=str(TASKS_DIR), limit=4, batch_size=4, particles=2, iterations=2,
                  layer_min=0, layer_max=3, heldout_task="", heldout_limit=4)  # fmt: skip
    values.update(changes)
    return [values[name] for name in NAMES]


def test_the_form_defaults_to_strength_bounds():
    request = parse_request(["a"], *_values())
    assert (request.space.unit, request.space.low, request.space.high) == ("strength", -0.4, 0.4)
    alpha = parse_request(["a"], *_values(unit="alpha", alpha_min=-1.0, alpha_max=2.0))
    assert (alpha.space.unit, alpha.space.low, alpha.space.high) == ("alpha", -1.0, 2.0)
    with pytest.raises(InvalidInputError, match="The unit must be one of"):
        parse_request(["a"], *_values(unit="volts"))
    # concept strength is the command line's for now (the tab scores a task)
    with pytest.raises(InvalidInputError, match="--objective concept"):
        parse_request(["a"], *_values(objective="concept"))
