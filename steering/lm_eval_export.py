"""Steering vectors as a steer file for lm-eval's own `steered` model.

lm-eval 0.4.13 ships `lm_eval/models/hf_steered.py`: `lm_eval --model
steered --model_args pretrained=...,steer_path=FILE`, so lm-eval itself can
re-score a setting tuned here. What it reads, from its source:

- `.pt` / `.pth`: `torch.load` of a dict {hookpoint: {"steering_vector",
  "steering_coefficient", "action", "bias", "head_index"}}. With action
  "add" it adds `steering_vector.to(model dtype) * steering_coefficient` to
  every position of the hookpoint module's output (the first element when
  the module returns a tuple), on every forward call, prompt and generated
  tokens alike. Hookpoints are names in `model.base_model.named_modules()`.
- `.csv`: one row per feature of a sparse autoencoder (columns loader
  sparsify or sae_lens, sparse_model, feature_index, ...): it loads the SAE
  and takes a row of its decoder. A steerswarm vector is a dense direction
  of its own, not an SAE feature, so it has no CSV form (and there an "add"
  row fails lm-eval's own `assert bias is None`, since its loader always
  sets the SAE's decoder bias). Exports are refused with that reason.

What steerswarm adds (steering/engine.py): sum(alpha * V) of the vectors at
layer L, to every position of the state ENTERING decoder layer L, on every
forward call. That state is the output of decoder layer L - 1, and for
L = 0 the output of the input embedding module, where nothing stands
between the two (Llama, Mistral, Qwen: yes; GPT-2 adds position embeddings,
Gemma scales: no, and layer 0 is refused there). Each mapping is checked on
the loaded model by one short unsteered forward pass, comparing the
hookpoint's output with the state entering the layer, before anything is
written.

Each steered layer is one hookpoint whose `steering_vector` is the whole
sum (`steering.batched.setting_deltas`: the same float operations as the
hook's sum), with coefficient 1.0, so
lm-eval adds the same numbers (in half precision too: it would cast before
multiplying). Raising the coefficient scales every vector at that layer.
"""

from __future__ import annotations

import io
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import torch

from steering.batched import setting_deltas
from steering.engine import Steerer
from steering.errors import InvalidInputError, UnsupportedModelError, VectorWriteError
from steering.outputs import atomic_write, reason
from steering.vector import SteeringVector

PT_SUFFIXES = (".pt", ".pth")
CSV_SUFFIX = ".csv"


@dataclass(frozen=True)
class LmEvalExport:
    """A written steer file: where, and which hookpoint each of our layers became."""

    path: Path
    hookpoints: Mapping[int, str]

    def __post_init__(self) -> None:
        object.__setattr__(self, "hookpoints", MappingProxyType(dict(self.hookpoints)))


def check_steer_path(path: str | Path) -> Path:
    """`path` if lm-eval can read a dense steering vector from it (.pt, .pth)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == CSV_SUFFIX:
        raise InvalidInputError(
            f"{path.name}: lm-eval reads a .csv steer file as features of a sparse autoencoder "
            "(columns loader, sparse_model, feature_index: it loads the SAE with sparsify or "
            "sae_lens and takes one row of its decoder), and its 'add' rows fail lm-eval's own "
            "check that they carry no bias. A steerswarm vector is a direction of its own, which "
            "only the .pt format holds: write steer.pt instead."
        )
    if suffix not in PT_SUFFIXES:
        raise InvalidInputError(
            f"{path.name}: lm-eval's steered model reads .pt or .pth steer files (and .csv for "
            "sparse autoencoder features); name the file e.g. steer.pt."
        )
    return path


def hookpoints(steerer: Steerer, layers: Iterable[int]) -> dict[int, str]:
    """The lm-eval hookpoint of each of our `layers` on `steerer`'s model:
    the name, under `model.base_model`, of the module whose output is the
    state entering that layer. Checked by one unsteered forward pass; the
    caller holds the model lock.

    Raises:
        InvalidInputError: a layer out of range, or one whose entering state
            is not any single module's output.
    """
    model = steerer.model
    base = getattr(model, "base_model", model)
    names = {id(module): name for name, module in base.named_modules()}
    wanted = sorted(set(layers))
    modules: dict[int, torch.nn.Module] = {}
    for layer in wanted:
        if not 0 <= layer < steerer.info.num_layers:
            raise InvalidInputError(
                f"Layer {layer} is out of range: {steerer.info.name} has layers 0 to "
                f"{steerer.info.num_layers - 1}."
            )
        module = _source_module(steerer, layer)
        if id(module) not in names:
            raise InvalidInputError(
                f"Cannot export layer {layer} for lm-eval: the module before it is not under "
                "model.base_model, where lm-eval's steered model looks for hookpoints."
            )
        modules[layer] = module
    _check_outputs_enter_layers(steerer, modules)
    return {layer: names[id(module)] for layer, module in modules.items()}


def _source_module(steerer: Steerer, layer: int) -> torch.nn.Module:
    if layer > 0:
        return steerer.layers[layer - 1]
    embeddings = steerer.model.get_input_embeddings()
    if not isinstance(embeddings, torch.nn.Module):
        raise UnsupportedModelError(f"{steerer.info.name} has no input embedding module.")
    return embeddings


def _check_outputs_enter_layers(steerer: Steerer, modules: Mapping[int, torch.nn.Module]) -> None:
    """Run a few tokens unsteered; the output of `modules[L]` must equal the
    hidden state decoder layer L receives, for every L."""
    outputs: dict[int, torch.Tensor] = {}
    inputs: dict[int, torch.Tensor] = {}
    handles = []

    def keep_output(layer: int) -> Any:
        def hook(_module: torch.nn.Module, _args: Any, output: Any) -> None:
            outputs[layer] = (output[0] if isinstance(output, tuple) else output).detach().clone()

        return hook

    def keep_input(layer: int) -> Any:
        def hook(_module: torch.nn.Module, args: Any, kwargs: Any) -> None:
            hidden = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
            inputs[layer] = hidden.detach().clone()

        return hook

    tokens = steerer.tokenizer("The state entering a layer.", add_special_tokens=True)["input_ids"]
    ids = torch.tensor([tokens], device=steerer.device)
    try:
        for layer, module in modules.items():
            handles.append(module.register_forward_hook(keep_output(layer)))
            handles.append(
                steerer.layers[layer].register_forward_pre_hook(keep_input(layer), with_kwargs=True)
            )
        with steerer.unsteered(), torch.no_grad():
            steerer.model(input_ids=ids, attention_mask=torch.ones_like(ids))
    finally:
        for handle in handles:
            handle.remove()
    for layer in modules:
        out, entering = outputs.get(layer), inputs.get(layer)
        if out is None or entering is None or out.shape != entering.shape or not torch.equal(
            out, entering
        ):
            raise InvalidInputError(_not_hookable(steerer, layer))


def _not_hookable(steerer: Steerer, layer: int) -> str:
    if layer == 0:
        return (
            f"Cannot export a vector at layer 0 for lm-eval: the state entering decoder layer 0 "
            f"of {steerer.info.name} is not the output of its embedding module (the model adds "
            "position embeddings or scales it in between), and lm-eval's steered model only "
            "adds to a module's output. Move the vector to layer 1 or above."
        )
    return (
        f"Cannot export a vector at layer {layer} for lm-eval: in {steerer.info.name} the "
        f"output of decoder layer {layer - 1} is not the state entering layer {layer}."
    )


def steer_config(
    steerer: Steerer, vectors: Sequence[SteeringVector]
) -> dict[str, dict[str, Any]]:
    """lm-eval's steer dict for `vectors` on `steerer`'s model (hookpoints
    checked; see the module docstring). The caller holds the model lock."""
    return _steer_config(steerer, vectors)[0]


def _steer_config(
    steerer: Steerer, vectors: Sequence[SteeringVector]
) -> tuple[dict[str, dict[str, Any]], dict[int, str]]:
    if not vectors:
        raise InvalidInputError("There are no vectors to export.")
    for vector in vectors:
        steerer.check(vector)
    sums = setting_deltas(vectors)
    names = hookpoints(steerer, sums)
    config: dict[str, dict[str, Any]] = {}
    for layer, total in sorted(sums.items()):
        at_layer = [v for v in vectors if v.layer == layer]
        config[names[layer]] = {
            "action": "add",
            "steering_vector": total.detach().to("cpu", torch.float32).contiguous().clone(),
            "steering_coefficient": 1.0,
            "bias": None,
            "head_index": None,
            # Read by people, ignored by lm-eval.
            "description": (
                f"steerswarm: the state entering decoder layer {layer} of {steerer.info.name}, "
                "+ " + " + ".join(f"{v.alpha:g} x vector {v.id}" for v in at_layer)
            ),
        }
    return config, names


def export_lm_eval(
    path: str | Path, steerer: Steerer, vectors: Sequence[SteeringVector]
) -> LmEvalExport:
    """Write `vectors` as a steer file for lm-eval's steered model on
    `steerer`'s model; nothing is written if anything is refused. The
    caller holds the model lock.

    Raises:
        InvalidInputError: a .csv or other name, no vectors, a layer lm-eval
            cannot reach.
        IncompatibleVectorError: a vector that does not fit the model.
        VectorWriteError: the file could not be written.
    """
    path = check_steer_path(path)
    config, names = _steer_config(steerer, vectors)
    buffer = io.BytesIO()
    torch.save(config, buffer)
    try:
        atomic_write(path, buffer.getvalue())
    except OSError as exc:
        raise VectorWriteError(
            f"Could not write {path}: {reason(exc)}. Any earlier file there is unchanged."
        ) from exc
    return LmEvalExport(path, names)


def pretrained_args(origin: tuple[str | None, str | None] | None, name: str) -> str:
    """lm-eval's model_args that load the same model: `pretrained=` (and
    `gguf_file=`) from how `load_model` was called; the model's name, to be
    replaced by its folder, when it was handed over in memory."""
    from steering.models import EMBEDDED_GGUF, embedded_model_folder

    if origin is None:
        return f"pretrained={name}"
    model, gguf_file = origin
    if model is None and gguf_file is None:
        return f"pretrained={embedded_model_folder()},gguf_file={EMBEDDED_GGUF}"
    if model is None:
        gguf_path = Path(str(gguf_file))
        return f"pretrained={gguf_path.parent},gguf_file={gguf_path.name}"
    return f"pretrained={model}" + (f",gguf_file={gguf_file}" if gguf_file else "")


def lm_eval_command(
    export: LmEvalExport,
    model_args: str,
    task: str | None = None,
    include_path: str | None = None,
    extra: Sequence[str] = (),
) -> str:
    """The `lm_eval` command line that scores with the exported steering."""
    args = [
        "lm_eval", "--model", "steered",
        "--model_args", f"{model_args},steer_path={export.path}",
        "--tasks", task or "TASK",
    ]
    if include_path:
        args += ["--include_path", include_path]
    return shlex.join([*args, *extra])
