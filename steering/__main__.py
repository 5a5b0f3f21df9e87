"""Command line: capture, generate, and exchange vectors with llama.cpp and repeng.

GGUF control vectors are llama.cpp's and repeng's format (docs/gguf.md).

    python -m steering capture --prompts FILE [--contrast FILE] --layer L --alpha A --out FILE
    python -m steering generate --vectors FILE --prompt TEXT [--alpha A]
    python -m steering export-gguf --vectors FILE [--alpha A] --out FILE.gguf
    python -m steering import-gguf --control-vector FILE.gguf [--scale S] [--skip-last-layer] --out FILE

All take --model and --gguf-file (default: the embedded SmolLM2). `generate`
and `export-gguf` read .safetensors vector files and .gguf control vectors.
"""

from __future__ import annotations

import argparse
import logging
import sys
import textwrap
from pathlib import Path

from steering.capture import capture_vector, split_prompts
from steering.engine import Steerer, steerer_for
from steering.errors import InvalidInputError, SteerSwarmError
from steering.generate import GenerationSettings, complete
from steering.gguf import export_control_vector, import_control_vector, llama_cpp_flags, load_vector_file
from steering.models import load_model
from steering.store import save_vectors
from steering.vector import SteeringVector


def _read_prompts(path: str | None) -> list[str]:
    if path is None:
        return []
    try:
        return split_prompts(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise InvalidInputError(f"Cannot read prompts file {path}: {exc.strerror}") from exc


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m steering", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    capture = sub.add_parser("capture", help="capture a steering vector and save it")
    capture.add_argument("--prompts", required=True, help="file with one concept prompt per line")
    capture.add_argument("--contrast", help="file with one contrast prompt per line")
    capture.add_argument("--layer", type=int, required=True)
    capture.add_argument("--out", required=True, help="vector file to write (.safetensors)")
    generate = sub.add_parser("generate", help="steered and unsteered completions of a prompt")
    generate.add_argument("--vectors", required=True, help="vector file from `capture` or the app")
    generate.add_argument("--prompt", required=True)
    generate.add_argument("--max-new-tokens", type=int, default=60)
    generate.add_argument("--temperature", type=float, default=0.0)
    export = sub.add_parser("export-gguf", help="write vectors as a llama.cpp control vector")
    export.add_argument("--vectors", required=True, help="vector file (.safetensors or .gguf)")
    export.add_argument("--out", required=True, help="control vector file to write (.gguf)")
    imports = sub.add_parser("import-gguf", help="read a llama.cpp or repeng control vector")
    imports.add_argument("--control-vector", required=True, help="GGUF control vector file")
    imports.add_argument("--scale", type=float, default=1.0, help="alpha of every direction")
    imports.add_argument(
        "--skip-last-layer", action="store_true",
        help="leave out the direction added after the last layer (steerswarm cannot apply it)",
    )  # fmt: skip
    imports.add_argument("--out", required=True, help="vector file to write (.safetensors)")
    for command in (capture, generate, export):
        command.add_argument(
            "--alpha",
            type=float,
            help="H + alpha * V at the vector's layer"
            + (" (required)" if command is capture else " (default: each vector's saved alpha)"),
        )
        # `--coeff` was the old name of --alpha; kept so old scripts still run.
        command.add_argument("--coeff", dest="alpha", type=float, help=argparse.SUPPRESS)
    for command in (capture, generate, export, imports):
        command.add_argument("--model", help="local model folder or hub id (default: embedded SmolLM2)")
        command.add_argument("--gguf-file", help="GGUF file inside --model, or a path to one")
    return parser


def _capture(args: argparse.Namespace) -> None:
    if args.alpha is None:
        raise InvalidInputError("capture needs --alpha (the steering strength, e.g. --alpha 4).")
    prompts = _read_prompts(args.prompts)
    contrast = _read_prompts(args.contrast)
    loaded = load_model(args.model, args.gguf_file)
    steerer = steerer_for(loaded.model, loaded.tokenizer, loaded.name)
    vector = capture_vector(steerer, prompts, args.layer, args.alpha, contrast)
    path = save_vectors(args.out, [vector], steerer.info)
    print(f"Saved a vector at layer {vector.layer} (norm {vector.norm:.2f}) to {path}")


def _generate(args: argparse.Namespace) -> None:
    settings = GenerationSettings(max_new_tokens=args.max_new_tokens, temperature=args.temperature)
    loaded = load_model(args.model, args.gguf_file)
    steerer = steerer_for(loaded.model, loaded.tokenizer, loaded.name)
    vectors = _vectors(args, steerer)
    with steerer.unsteered():
        unsteered = complete(loaded.model, loaded.tokenizer, args.prompt, settings)
    with steerer.applied(vectors):
        steered = complete(loaded.model, loaded.tokenizer, args.prompt, settings)
    print(side_by_side(("steered", steered), ("unsteered", unsteered)))


def _vectors(args: argparse.Namespace, steerer: Steerer) -> list[SteeringVector]:
    vectors, loaded_line = load_vector_file(args.vectors, steerer.info)
    print(loaded_line, file=sys.stderr)
    if args.alpha is not None:
        vectors = [vector.with_alpha(args.alpha) for vector in vectors]
    return vectors


def _export_gguf(args: argparse.Namespace) -> None:
    loaded = load_model(args.model, args.gguf_file)
    steerer = steerer_for(loaded.model, loaded.tokenizer, loaded.name)
    control = export_control_vector(args.out, _vectors(args, steerer), steerer.info)
    path = Path(args.out).resolve()
    print(f"Wrote {path}: {len(control.directions)} direction(s), llama.cpp layers "
          f"{control.layer_range[0]} to {control.layer_range[1]}.")  # fmt: skip
    print(f"llama-server flags (text-generation-webui: the llama.cpp loader's extra-flags):\n"
          f"  {llama_cpp_flags(path, control)}")  # fmt: skip


def _import_gguf(args: argparse.Namespace) -> None:
    loaded = load_model(args.model, args.gguf_file)
    steerer = steerer_for(loaded.model, loaded.tokenizer, loaded.name)
    imported = import_control_vector(
        args.control_vector, steerer.info, args.scale, args.skip_last_layer
    )
    path = save_vectors(args.out, imported.vectors, steerer.info)
    print(f"{imported.notice} Saved them to {path}")


_COMMANDS = {
    "capture": _capture,
    "generate": _generate,
    "export-gguf": _export_gguf,
    "import-gguf": _import_gguf,
}


def side_by_side(left: tuple[str, str], right: tuple[str, str], width: int = 48) -> str:
    """Two titled texts in columns, each wrapped to `width` characters."""
    columns = [[title, "-" * width, *_wrap(text, width)] for title, text in (left, right)]
    rows = max(len(c) for c in columns)
    for column in columns:
        column.extend([""] * (rows - len(column)))
    return "\n".join(f"{a:<{width}} | {b}" for a, b in zip(*columns))


def _wrap(text: str, width: int) -> list[str]:
    lines = []
    for paragraph in text.strip().splitlines() or [""]:
        lines.extend(textwrap.wrap(paragraph, width) or [""])
    return lines


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        _COMMANDS[args.command](args)
    except SteerSwarmError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
