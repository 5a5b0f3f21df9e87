"""`python -m optimize export-lm-eval`: an optimization's setting as a steer
file for lm-eval's own `steered` model, and the command that re-scores it.

    python -m optimize export-lm-eval --result R.json --vectors FILE --out steer.pt [--best]

The setting is the result's recommended one (`--best`: its best-scoring one
even when nothing is recommended): the run's vectors (`--vectors`, the file
the run was given) with each tuned vector re-extracted at its tuned layer
and scaled by its tuned alpha, exactly as the run scored it
(optimize/scoring/placing.py). The file is written by steering/lm_eval_export.py.
The printed command names the documents the run scored (`--samples`, lm-eval's
own document ids), so lm-eval's score is the one the result records.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from optimize.guard.objective import uses_task
from optimize.guard.split import CONFIRM, SEARCH
from optimize.run.results import OptimizationResult
from optimize.scoring.evaluation import Evaluation
from optimize.scoring.placing import Placer
from steering.engine import Steerer
from steering.errors import IncompatibleVectorError, InvalidInputError, SteerSwarmError
from steering.extract.task_pairs import reserved_keys
from steering.vector import SteeringVector

PROG = "python -m optimize export-lm-eval"


def chosen_evaluation(result: OptimizationResult, best: bool = False) -> tuple[Evaluation, str]:
    """The recommended evaluation (its scores on the confirmation documents),
    or with `best` the best search evaluation; and the part of the split
    (`optimize.guard.split` side) whose documents that score is of.

    Raises:
        InvalidInputError: nothing is recommended (the verdict says why) and
            `best` is not set.
    """
    if best:
        return result.best, SEARCH
    recommended = result.verdict.recommended
    if recommended is None:
        raise InvalidInputError(
            f"{result.verdict.headline} To export the best-scoring setting anyway, add --best."
        )
    return recommended, (CONFIRM if result.confirmation is not None else SEARCH)


def setting_vectors(
    result: OptimizationResult,
    evaluation: Evaluation,
    steerer: Steerer,
    vectors: Sequence[SteeringVector],
) -> list[SteeringVector]:
    """The vectors `evaluation` of `result` stands for on `steerer`'s model:
    `vectors` (the run's), each tuned one re-extracted at its layer and
    scaled by its alpha.

    Raises:
        IncompatibleVectorError: the result was made on a model of another depth.
        InvalidInputError: `vectors` lack a vector the result tuned.
    """
    if result.num_layers != steerer.info.num_layers:
        raise IncompatibleVectorError(
            f"The result was made with {result.model} ({result.num_layers} layers); the loaded "
            f"model {steerer.info.name} has {steerer.info.num_layers} layers."
        )
    return Placer(steerer, vectors).place(result.tuned_setting(evaluation.setting))


def scored_documents(
    result: OptimizationResult,
    steerer: Steerer,
    vectors: Sequence[SteeringVector],
    side: str = SEARCH,
) -> dict[str, list[int]]:
    """lm-eval's ids of the documents of one part (`side`) of the run's split,
    per task: its limit, its document split and the documents its task
    vectors were built from all decide them, so they are found by building
    the run's fitness (the task's prompts only; nothing is scored)."""
    from optimize.scoring.fitness import LmEvalFitness

    fitness = LmEvalFitness(
        steerer, result.fitness, prefix_cache=False, split=result.split,
        side=side if result.split is not None else SEARCH, exclude=reserved_keys(vectors),
    )
    return fitness.document_ids()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Write an optimization's recommended setting as a steer file for lm-eval's "
        "own steered model, and print the lm_eval command that re-scores it.",
    )
    p.add_argument("--result", required=True, metavar="R.json", help="an optimization result")
    p.add_argument(
        "--vectors", required=True, metavar="FILE", help="the vector file the run was given"
    )
    p.add_argument("--out", required=True, metavar="steer.pt", help="steer file to write (.pt)")
    p.add_argument(
        "--best", action="store_true",
        help="the best-scoring setting even when the run recommends none",
    )
    p.add_argument("--model", default=None, help="model folder or hub id (default: SmolLM2)")
    p.add_argument("--gguf-file", default=None, help="GGUF file in --model, or a path to one")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda if available)")
    return p


def main(argv: Sequence[str]) -> int:
    args = _parser().parse_args(list(argv))
    try:
        print(_export(args))
    except SteerSwarmError as exc:
        print(f"{PROG}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    except OSError as exc:
        from steering.outputs import reason

        print(f"{PROG}: error: {exc.filename or ''} {reason(exc)}".strip(), file=sys.stderr)
        return 1
    return 0


def _export(args: argparse.Namespace) -> str:
    from steering import load_model, load_vectors, steerer_for
    from steering.lm_eval_export import (
        check_steer_path,
        export_lm_eval,
        lm_eval_command,
        pretrained_args,
    )
    from steering.outputs import check_output_path

    out = check_output_path(check_steer_path(args.out), "--out")
    result = OptimizationResult.load(args.result)  # before the model loads
    evaluation, side = chosen_evaluation(result, args.best)
    if not Path(args.vectors).is_file():
        raise InvalidInputError(f"Vector file not found: {args.vectors}")
    loaded = load_model(args.model, args.gguf_file, args.device)
    steerer = steerer_for(loaded.model, loaded.tokenizer, loaded.name)
    vectors = load_vectors(args.vectors, steerer.info)
    setting = setting_vectors(result, evaluation, steerer, vectors)
    export = export_lm_eval(out, steerer, setting)
    hooks = ", ".join(f"our layer {layer} -> {name}" for layer, name in export.hookpoints.items())
    lines = [
        f"Wrote {export.path.resolve()} ({hooks}): the "
        f"{'best' if args.best else 'recommended'} setting of {Path(args.result).name}, "
        + ", ".join(
            f"layer {t.layer} alpha {t.alpha:g}" for t in result.tuned_setting(evaluation.setting)
        )
        + "."
    ]
    model_args = pretrained_args(loaded.origin, loaded.name)
    if not uses_task(result.objective):
        lines.append(
            "The run scored concept strength on the vector's own prompts, not an lm-eval task: "
            f"score the file on a task with\n  {lm_eval_command(export, model_args)}"
        )
        return "\n".join(lines)
    config = result.fitness
    samples = scored_documents(result, steerer, vectors, side)
    extra = ["--num_fewshot", str(config.num_fewshot), "--batch_size", str(config.batch_size),
             "--samples", json.dumps(samples, separators=(",", ":"))]
    command = lm_eval_command(export, model_args, config.task, config.include_path, extra)
    documents = sum(len(ids) for ids in samples.values())
    lines.append(
        f"The run scored {config.metric} {evaluation.score:.4f} on these {documents} documents "
        f"(the unsteered model {_baseline(result, side):.4f}). lm-eval's own steered model:\n"
        f"  {command}"
    )
    return "\n".join(lines)


def _baseline(result: OptimizationResult, side: str) -> float:
    """The unsteered score on the documents of `side`."""
    if side == CONFIRM and result.confirmation is not None:
        return result.confirmation.baseline.score
    return result.baseline.score


__all__ = ["chosen_evaluation", "main", "scored_documents", "setting_vectors"]
