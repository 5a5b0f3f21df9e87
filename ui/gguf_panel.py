"""The Steering tab's export panel: the active vectors as a GGUF control
vector with the flags that make llama.cpp apply it, or as a steer file for
lm-eval's own `steered` model with the command that scores with it.

A panel of its own (built inside the Steering tab) so the tab stays small;
the file formats and the layer mappings live in steering/gguf.py and
steering/lm_eval_export.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from steering.gguf import FIRST_EXPORTABLE_LAYER, export_control_vector, llama_cpp_flags
from steering.lm_eval_export import export_lm_eval, lm_eval_command, pretrained_args
from steering.session import Current, ModelSession
from ui import format as fmt
from ui.files import plain_file_name
from ui.model_access import locked

HELP = (
    "**Steer a GGUF model on llama.cpp** (text-generation-webui's llama.cpp loader, "
    "llama-server, llama-cli). **Export for llama.cpp** writes the active vectors as one "
    "control vector file, alpha included, that llama.cpp applies at the same layers as "
    "here. Then, in the webui: Model tab, llama.cpp loader, paste the flags below into "
    "**extra-flags** (under *See more options*) and load the GGUF build of the same "
    "model. Vectors at layers 0 and 1 "
    f"cannot be exported (llama.cpp starts at our layer {FIRST_EXPORTABLE_LAYER}; see "
    "docs/gguf.md). To change the strength there, use "
    "`--control-vector-scaled FILE:SCALE` instead of `--control-vector FILE`.\n\n"
    "Capturing vectors and the **Optimize** tab need the Transformers loader: they run "
    "the PyTorch model to read activations and score settings, which llama.cpp does not "
    "expose. Find the vectors here, then export them."
)

LM_EVAL_HELP = (
    "**Score with lm-eval's own steered model** (`lm_eval --model steered`). **Export for "
    "lm-eval** writes the active vectors as a `.pt` steer file: each layer's vectors, alpha "
    "included, added to the output of the module before that layer (our layer L is the state "
    "entering decoder layer L, the output of layer L-1), so lm-eval's scores are the ones this "
    "app computes. Run the command shown with your task."
)


@dataclass
class GgufPanel:
    """The panel's components, for tests and wiring."""

    export: gr.Button
    exported_file: gr.File
    flags: gr.Textbox
    export_lm_eval: gr.Button
    lm_eval_file: gr.File
    lm_eval_command: gr.Textbox


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
                yield (
                    gr.update(value=str(path), visible=True),
                    gr.update(value=flags, visible=True),
                    status,
                )
            else:
                yield gr.update(), gr.update(), status


    def export_lm_eval(self, file_name: str | None) -> Iterator[tuple[Any, Any, str]]:
        """(file, command, status): write the active vectors as a steer file for
        lm-eval's steered model beside the saved vector files, and show the
        lm_eval command that uses it."""
        try:
            name = plain_file_name(file_name, ".pt")
        except ValueError as exc:
            yield gr.update(), gr.update(), fmt.failed("export for lm-eval", str(exc))
            return
        done: list[tuple[Path, str]] = []

        def work(current: Current) -> str:
            path = ((self.save_dir or Path.cwd()) / name).resolve()
            steerer = current.steerer
            export = export_lm_eval(path, steerer, steerer.vectors)
            loaded = current.loaded
            model_args = pretrained_args(loaded.origin, loaded.name)
            done.append((path, lm_eval_command(export, model_args)))
            hooks = ", ".join(f"layer {n} → {hook}" for n, hook in export.hookpoints.items())
            return (
                f"✓ Exported {len(steerer.vectors)} vector(s) for lm-eval to {fmt.md(path)} "
                f"({fmt.md(hooks)}) — download it below, and replace TASK in the command."
            )

        for _table, _choices, status in locked(self.session, "export for lm-eval", work):
            if done:
                path, command = done[0]
                yield (
                    gr.update(value=str(path), visible=True),
                    gr.update(value=command, visible=True),
                    status,
                )
            else:
                yield gr.update(), gr.update(), status


def build(actions: GgufActions, file_name: gr.Textbox, status: gr.Markdown) -> GgufPanel:
    """Lay the panel out inside the Steering tab; `file_name` names the file
    (its stem, with .gguf), `status` is the tab's status line."""
    with gr.Accordion("Export: llama.cpp control vector, lm-eval steer file", open=False):
        gr.Markdown(HELP)
        with gr.Row():
            export = gr.Button("Export for llama.cpp")
            to_lm_eval = gr.Button("Export for lm-eval")
        exported_file = gr.File(label="Control vector file", interactive=False, visible=False)
        flags = gr.Textbox(
            label="extra-flags for the webui's llama.cpp loader (llama-server flags)",
            interactive=False,
            visible=False,
        )
        gr.Markdown(LM_EVAL_HELP)
        lm_eval_file = gr.File(label="lm-eval steer file", interactive=False, visible=False)
        command = gr.Textbox(
            label="lm-eval command (replace TASK with your task)", interactive=False, visible=False
        )
    export.click(
        actions.export, [file_name], [exported_file, flags, status], api_name="export_gguf"
    )
    to_lm_eval.click(
        actions.export_lm_eval, [file_name], [lm_eval_file, command, status],
        api_name="export_lm_eval",
    )
    return GgufPanel(
        export=export, exported_file=exported_file, flags=flags, export_lm_eval=to_lm_eval,
        lm_eval_file=lm_eval_file, lm_eval_command=command,
    )
