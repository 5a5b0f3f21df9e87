"""The few CSS rules the tabs need, in the standalone app and in the webui.

A form row whose fields have help texts of different lengths (one wraps to
two lines, its neighbour's does not) would set each input at a different
height: the Optimize tab's Limit box sat lower than Batch size, Particles
and Iterations. In rows marked with FORM_ROW every field fills the row's
height and puts its label and input at the bottom, so the inputs line up
whatever the help texts do (aligning the fields themselves at the bottom left
grey gaps above the shorter ones: the `.form` box's background). Gradio 4.37
(the webui) and current Gradio both wrap a row's fields in a `.form` box of
`.block`s: the rules cover both. A field the form hides keeps Gradio's own
`display: none` (in Gradio 4 the flex rule, more specific, once showed every
hidden field of the Optimize tab's Advanced section in the webui).

The webui takes the CSS from the extension's `custom_css()`; the standalone
app passes it to `launch()` (Gradio 6) or to `gr.Blocks` (Gradio 4), see
`css_kwargs`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

FORM_ROW = "steerswarm-form-row"

CSS = (
    f".{FORM_ROW}, .{FORM_ROW} > .form {{ align-items: stretch; }}\n"
    # not on a hidden field: Gradio 4 hides it with a weaker `.hidden {display: none}`
    f".{FORM_ROW} > .form > .block:not(.hidden), .{FORM_ROW} > .block:not(.hidden) {{ "
    "display: flex; flex-direction: column; }\n"
    f".{FORM_ROW} > .form > .block > .container, .{FORM_ROW} > .block > .container, "
    f".{FORM_ROW} > .form > .block > fieldset {{ margin-top: auto; height: auto; }}\n"
)


def css_kwargs(accepts: Callable[..., Any]) -> dict[str, Any]:
    """{"css": CSS} when `accepts` (gr.Blocks, or a Blocks' launch) takes a
    `css` argument in this Gradio, else {}: Gradio 4 takes it in the Blocks
    constructor, Gradio 6 in launch(), and each warns about the other."""
    return {"css": CSS} if "css" in inspect.signature(accepts).parameters else {}
