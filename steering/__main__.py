"""Command line: capture, generate, and exchange vectors with llama.cpp and repeng.

GGUF control vectors are llama.cpp's and repeng's format (docs/gguf.md).

    python -m steering capture --prompts FILE [--contrast FILE] [--method pca_diff]
                               --layer L (--alpha A | --strength S) --out FILE
    python -m steering capture --from-task NAME [--include-path DIR] [--docs N]
                               --layer L (--alpha A | --strength S) --out FILE
    python -m steering generate --vectors FILE --prompt TEXT [--alpha A]
    python -m steering export-gguf --vectors FILE [--alpha A] --out FILE.gguf
    python -m steering export-lm-eval --vectors FILE [--alpha A] --out steer.pt
    python -m steering import-gguf --control-vector FILE.gguf [--scale S] [--skip-last-layer]
        --out FILE

All take --model and --gguf-file (default: the embedded SmolLM2). `generate`
and the exports read .safetensors vector files and .gguf control vectors.
`export-lm-eval` writes a steer file for lm-eval's `steered` model
(steering/lm_eval_export.py) and prints the lm_eval command that uses it.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import textwrap
from pathlib import Path

from steering.capture import capture, split_prompts
from steering.engine import Steerer, steerer_for
from steering.errors import InvalidInputError, SteerSwarmError
from steering.extract import VectorSource
from steering.extract.base import CONTRAST_PROMPTS, PROMPTS
from steering.extract.task_pairs import DEFAULT_DOCS
from steering.generate import GenerationSettings, complete
from steering.gguf import (
    export_control_vector,
    import_control_vector,
    llama_cpp_flags,
    load_vector_file,
)
from steering.lm_eval_export import (
    LmEvalExport,
    check_steer_path,
    export_lm_eval,
    lm_eval_command,
    pretrained_args,
)
from steering.models import load_model
from steering.outputs import check_output_path, reason
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
    source = capture.add_mutually_exclusive_group(required=True)
    source.add_argument("--prompts", help="file with one concept prompt per line")
    source.add_argument(
        "--from-task",
        metavar="NAME",
        help="an lm-eval multiple-choice task: correct minus wrong answers of its documents",
    )
    capture.add_argument("--contrast", help="file with one contrast prompt per line")
    capture.add_argument(
        "--method",
        choices=("mean_diff", "pca_diff"),
        default="mean_diff",
        help="with --contrast: difference of means, or the first principal component of "
        "paired differences (prompt i with contrast prompt i); with --from-task: "
        "mean or PCA of the answer pairs",
    )
    capture.add_argument("--include-path", metavar="DIR", help="folder of the task's YAML files")
    capture.add_argument(
        "--docs",
        type=int,
        default=DEFAULT_DOCS,
        help=f"documents a task vector is built from (default {DEFAULT_DOCS}); from the "
        "training split when the task has one, else a seeded slice no search scores",
    )
    capture.add_argument("--seed", type=int, default=0, help="draws the task's documents")
    capture.add_argument("--layer", type=int, required=True)
    capture.add_argument(
        "--strength",
        type=float,
        help="instead of --alpha: the added vector's norm as a share of the layer's mean "
        "hidden-state norm on neutral text (0.5: half as long; see docs/files.md)",
    )
    capture.add_argument("--out", required=True, help="vector file to write (.safetensors)")
    generate = sub.add_parser("generate", help="steered and unsteered completions of a prompt")
    generate.add_argument("--vectors", required=True, help="vector file from `capture` or the app")
    generate.add_argument("--prompt", required=True)
    generate.add_argument("--max-new-tokens", type=int, default=60)
    generate.add_argument("--temperature", type=float, default=0.0)
    export = sub.add_parser("export-gguf", help="write vectors as a llama.cpp control vector")
    export.add_argument("--vectors", required=True, help="vector file (.safetensors or .gguf)")
    export.add_argument("--out", required=True, help="control vector file to write (.gguf)")
    to_lm_eval = sub.add_parser(
        "export-lm-eval", help="write vectors as a steer file for lm-eval's steered model"
    )
    to_lm_eval.add_argument("--vectors", required=True, help="vector file (.safetensors or .gguf)")
    to_lm_eval.add_argument("--out", required=True, help="steer file to write (.pt)")
    to_lm_eval.add_argument("--task", help="the lm-eval task named in the printed command")
    imports = sub.add_parser("import-gguf", help="read a llama.cpp or repeng control vector")
    imports.add_argument("--control-vector", required=True, help="GGUF control vector file")
    imports.add_argument("--scale", type=float, default=1.0, help="alpha of every direction")
    imports.add_argument(
        "--skip-last-layer", action="store_true",
        help="leave out the direction added after the last layer (steerswarm cannot apply it)",
    )
    imports.add_argument("--out", required=True, help="vector file to write (.safetensors)")
    for command in (capture, generate, export, to_lm_eval):
        command.add_argument(
            "--alpha",
            type=float,
            help="H + alpha * V at the vector's layer"
            + (" (required)" if command is capture else " (default: each vector's saved alpha)"),
        )
        # `--coeff` was the old name of --alpha; kept so old scripts still run.
        command.add_argument("--coeff", dest="alpha", type=float, help=argparse.SUPPRESS)
    for command in (capture, generate, export, to_lm_eval, imports):
        command.add_argument(
            "--model", help="local model folder or hub id (default: embedded SmolLM2)"
        )
        command.add_argument("--gguf-file", help="GGUF file inside --model, or a path to one")
    return parser


def _source(args: argparse.Namespace) -> VectorSource:
    """What to capture, checked before the model loads."""
    if args.from_task is not None:
        if args.contrast is not None:
            raise InvalidInputError("--contrast goes with --prompts, not --from-task.")
        from steering.lm_eval_tasks import task_source

        aggregate = "pca" if args.method == "pca_diff" else "mean"
        return task_source(args.from_task, args.include_path, args.docs, args.seed, aggregate)
    prompts, contrast = _read_prompts(args.prompts), _read_prompts(args.contrast)
    if args.method == "pca_diff":
        return VectorSource("pca_diff", {PROMPTS: prompts, CONTRAST_PROMPTS: contrast})
    return VectorSource.from_prompts(prompts, contrast)


def _capture(args: argparse.Namespace) -> None:
    if (args.alpha is None) == (args.strength is None):
        raise InvalidInputError(
            "capture needs --alpha (raw, e.g. --alpha 4) or --strength (relative, e.g. "
            "--strength 0.5), not both."
        )
    source = _source(args)
    out = check_output_path(args.out, "--out")  # before the model loads
    loaded = load_model(args.model, args.gguf_file)
    steerer = steerer_for(loaded.model, loaded.tokenizer, loaded.name)
    vector = capture(steerer, source, args.layer, args.alpha if args.alpha is not None else 0.0)
    if args.strength is not None:
        vector = vector.with_strength(args.strength)
    path = save_vectors(out, [vector], steerer.info)  # VectorWriteError: one line
    print(
        f"Saved a vector at layer {vector.layer} (norm {vector.norm:.2f}, alpha "
        f"{vector.alpha:.3g} = strength {vector.strength:.3g} of the layer's mean norm "
        f"{vector.layer_norm:.3g}) to {path}"
    )


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
          f"{control.layer_range[0]} to {control.layer_range[1]}.")
    print(f"llama-server flags (text-generation-webui: the llama.cpp loader's extra-flags):\n"
          f"  {llama_cpp_flags(path, control)}")


def _export_lm_eval(args: argparse.Namespace) -> None:
    out = check_output_path(check_steer_path(args.out), "--out")  # before the model loads
    loaded = load_model(args.model, args.gguf_file)
    steerer = steerer_for(loaded.model, loaded.tokenizer, loaded.name)
    export = export_lm_eval(out, steerer, _vectors(args, steerer))
    print(export_lines(export, pretrained_args(loaded.origin, loaded.name), args.task))


def export_lines(export: LmEvalExport, model_args: str, task: str | None) -> str:
    """What an lm-eval export prints: the file, each layer's hookpoint, the command."""
    hooks = ", ".join(f"our layer {layer} -> {name}" for layer, name in export.hookpoints.items())
    return (
        f"Wrote {export.path.resolve()} ({hooks}).\n"
        "Score with lm-eval's own steered model:\n"
        f"  {lm_eval_command(export, model_args, task)}"
    )


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
    "export-lm-eval": _export_lm_eval,
    "import-gguf": _import_gguf,
}


def side_by_side(left: tuple[str, str], right: tuple[str, str], width: int = 48) -> str:
    """Two titled texts in columns, each wrapped to `width` characters."""
    columns = [[title, "-" * width, *_wrap(text, width)] for title, text in (left, right)]
    rows = max(len(c) for c in columns)
    for column in columns:
        column.extend([""] * (rows - len(column)))
    return "\n".join(f"{a:<{width}} | {b}" for a, b in zip(*columns, strict=True))


def _wrap(text: str, width: int) -> list[str]:
    lines = []
    for paragraph in text.strip().splitlines() or [""]:
        lines.extend(textwrap.wrap(paragraph, width) or [""])
    return lines


class _Stopped(KeyboardInterrupt):
    """SIGTERM (from `kill`, systemd, a batch system), stopping a command like
    Ctrl-C does: the one-line message instead of a silent death."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise _Stopped


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # SIGINT stops a command too, even when it was started with SIGINT ignored
    # (a background job of a script, `cmd &`, inherits that), as `python -m
    # optimize` does with its own handler.
    previous = {
        signal.SIGTERM: signal.signal(signal.SIGTERM, _on_sigterm),
        signal.SIGINT: signal.signal(signal.SIGINT, signal.default_int_handler),
    }
    try:
        return _run(args)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _run(args: argparse.Namespace) -> int:
    """The command, its errors as one line each. Every output is written
    atomically (steering.outputs), so a stop before the end leaves none."""
    try:
        _COMMANDS[args.command](args)
    except SteerSwarmError as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{reason(exc)}", file=sys.stderr)
        return 2
    except _Stopped:
        print("error: stopped by SIGTERM; nothing was written.", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print("error: interrupted (Ctrl-C); nothing was written.", file=sys.stderr)
        return 128 + signal.SIGINT
    return 0


if __name__ == "__main__":
    sys.exit(main())
