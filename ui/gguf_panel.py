"""The Steering tab's llama.cpp panel: export the active vectors as a GGUF
control vector and show the flags that make llama.cpp apply it.

A panel of its own (built inside the Steering tab) so the tab stays small;
the file format and the layer mapping live in steering/gguf.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from steering.gguf import FIRST_EXPORTABLE_LAYER, export_control_vector, llama_cpp_flags
from steering.session import Current, ModelSession
from ui import format as fmt
from ui.files import plain_file_name
from ui.model_access import locked

HELP = (
    "**Steer a GGUF model on llama.cpp** (text-generation-webui's llama.cpp loader, "
    "llama-server, llama-cli). **Export for llama.cpp** writes the active vectors as one "
    "control vector file, alpha included, that llama.cpp applies at the same layers as "
    "here. Then, in the webui: Model tab, llama.cpp loader, paste the flags below into "
    "**extra-flags** (under *See more options*) and load the GGUF build of the same model. Vectors at layers 0 and 1 "
    f"cannot be exported (llama.cpp starts at our layer {FIRST_EXPORTABLE_LAYER}; see "
    "docs/gguf.md). To change the strength there, use "
    "`--control-vector-scaled FILE:SCALE` instead of `--control-vector FILE`.\n\n"
    "Capturing vectors and the **Optimize** tab need the Transformers loader: they run "
    "the PyTorch model to read activations and score settings, which llama.cpp does not "
    "expose. Find the vectors here, then export them."
)


@dataclass
class GgufPanel:
    """The panel's components, for tests and wiring."""

    export: gr.Button
    exported_file: gr.File
    flags: gr.Textbox


class GgufActions:
    """The panel's handlers, bound to one model session."""

    def __init__(self, session: ModelSession, save_dir: Path | None) -> None:
        self.session = session
        self.save_dir = save_dir

    def export(self, file_name: str | None) -> Iterator[tuple[Any, Any, str]]:
        """(file, flags, status): write the active vectors as a control vector
        beside the saved vector files and show the llama-server flags for it."""
        try:
            name = plain_file_name(file_name, ".gguf")
        except ValueError as exc:
            yield gr.update(), gr.update(), fmt.failed("export for llama.cpp", str(exc))
            return
        done: list[tuple[Path, str]] = []

        def work(current: Current) -> str:
            folder = self.save_dir or Path.cwd()
            path = (folder / name).resolve()
            steerer = current.steerer
            control = export_control_vector(path, steerer.vectors, steerer.info)
            done.append((path, llama_cpp_flags(path, control)))
            start, end = control.layer_range
            return (
                f"✓ Exported {len(steerer.vectors)} vector(s) for llama.cpp to {fmt.md(path)} "
                f"(llama.cpp layers {start} to {end}, our layers {start + 1} to {end + 1}) "
                "— download it below, and put the flags in the llama.cpp loader's extra-flags."
            )

        for _table, _choices, status in locked(self.session, "export for llama.cpp", work):
            if done:
                path, flags = done[0]
                yield gr.update(value=str(path), visible=True), gr.update(value=flags, visible=True), status
            else:
                yield gr.update(), gr.update(), status


def build(actions: GgufActions, file_name: gr.Textbox, status: gr.Markdown) -> GgufPanel:
    """Lay the panel out inside the Steering tab; `file_name` names the file
    (its stem, with .gguf), `status` is the tab's status line."""
    with gr.Accordion("llama.cpp: export as a GGUF control vector", open=False):
        gr.Markdown(HELP)
        export = gr.Button("Export for llama.cpp")
        exported_file = gr.File(label="Control vector file", interactive=False, visible=False)
        flags = gr.Textbox(
            label="extra-flags for the webui's llama.cpp loader (llama-server flags)",
            interactive=False,
            visible=False,
        )
    export.click(actions.export, [file_name], [exported_file, flags, status], api_name="export_gguf")
    return GgufPanel(export=export, exported_file=exported_file, flags=flags)
