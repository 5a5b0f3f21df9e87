"""The few CSS rules the tabs need, in the standalone app and in the webui.

A form row whose fields have help texts of different lengths (one wraps to
two lines, its neighbour's does not) would set each input at a different
height: the Optimize tab's Limit box sat lower than Batch size, Particles
and Iterations. Rows marked with FORM_ROW align their fields at the bottom,
so the inputs line up whatever the help texts do. Gradio 4.37 (the webui)
wraps a row's fields in a `.form` box, current Gradio may not: the rule
covers both.

The webui takes the CSS from the extension's `custom_css()`; the standalone
app passes it to `launch()` (Gradio 6) or to `gr.Blocks` (Gradio 4), see
`css_kwargs`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

FORM_ROW = "steerswarm-form-row"

CSS = f".{FORM_ROW}, .{FORM_ROW} > .form {{ align-items: flex-end; }}\n"


def css_kwargs(accepts: Callable[..., Any]) -> dict[str, Any]:
    """{"css": CSS} when `accepts` (gr.Blocks, or a Blocks' launch) takes a
    `css` argument in this Gradio, else {}: Gradio 4 takes it in the Blocks
    constructor, Gradio 6 in launch(), and each warns about the other."""
    return {"css": CSS} if "css" in inspect.signature(accepts).parameters else {}
