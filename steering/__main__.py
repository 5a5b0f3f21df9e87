"""Command line: capture a vector, or generate with saved vectors.

    python -m steering capture --prompts FILE [--contrast FILE] --layer L --alpha A --out FILE
    python -m steering generate --vectors FILE --prompt TEXT [--alpha A]

Both take --model and --gguf-file (default: the embedded SmolLM2).
"""

from __future__ import annotations

import argparse
import logging
import sys
import textwrap
from pathlib import Path

from steering.capture import capture_vector, split_prompts
from steering.engine import steerer_for
from steering.errors import InvalidInputError, SteerSwarmError
from steering.generate import GenerationSettings, complete
from steering.models import load_model
from steering.store import load_vectors, save_vectors


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
    for command in (capture, generate):
        command.add_argument(
            "--alpha",
            type=float,
            help="H + alpha * V at the vector's layer"
            + (" (required)" if command is capture else " (default: each vector's saved alpha)"),
        )
        # `--coeff` was the old name of --alpha; kept so old scripts still run.
        command.add_argument("--coeff", dest="alpha", type=float, help=argparse.SUPPRESS)
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
    vectors = load_vectors(args.vectors, steerer.info)
    if args.alpha is not None:
        vectors = [vector.with_alpha(args.alpha) for vector in vectors]
    with steerer.unsteered():
        unsteered = complete(loaded.model, loaded.tokenizer, args.prompt, settings)
    with steerer.applied(vectors):
        steered = complete(loaded.model, loaded.tokenizer, args.prompt, settings)
    print(side_by_side(("steered", steered), ("unsteered", unsteered)))


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
        if args.command == "capture":
            _capture(args)
        else:
            _generate(args)
    except SteerSwarmError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
