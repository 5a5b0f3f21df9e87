"""`python -m optimize`: search the layer and alpha of saved steering vectors.

Errors are one line on stderr with a non-zero exit, and no output file.
The first Ctrl-C (or SIGTERM, as sent by `kill`, systemd or a batch system)
stops after the current evaluation and saves what was found (marked
cancelled); a second one aborts at once. Either way, and after a crash or a
power cut, the run's journal (beside --out) keeps every scored evaluation,
and `--resume JOURNAL` finishes the run without scoring them again
(optimize/run/journal.py). A result that cannot be written to --out (disk full,
folder gone read-only meanwhile) is written to the data folder's results/ (or
the temporary folder) instead, and the message says where: a finished run is
never thrown away. `--ray [ADDRESS] --workers N` scores each iteration's
settings on N Ray workers (optimize/workers/ray.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import signal
import sys
import threading
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from types import FrameType
from typing import NoReturn

from optimize.config.table import add_arguments

PROG = "python -m optimize"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog=PROG,
        description="Find the layer and alpha of steering vectors that maximise an "
        "lm-eval score, with a particle swarm.",
    )
    p.add_argument("--vectors", metavar="FILE", help="saved steering vectors (required)")
    p.add_argument(
        "--select",
        default=None,
        metavar="N,N",
        help="which vectors of the file to optimize, numbered from 1 (default: all)",
    )
    add_arguments(p)  # the run settings, from optimize/config/table.py
    p.add_argument("--out", metavar="FILE", help="where to write the JSON result (required)")
    p.add_argument(
        "--resume",
        metavar="JOURNAL",
        help="continue the interrupted run of this journal (RESULT.journal.jsonl beside its "
        "result) without scoring again what it scored; alone, it repeats the run's command",
    )
    p.add_argument(
        "--ray",
        nargs="?",
        const="local",
        metavar="ADDRESS",
        help="score on Ray workers (--workers): a running cluster's address, or none for a "
        "local Ray (pip install -r requirements/ray.txt; docs/scale-out.md)",
    )
    p.add_argument(
        "--num-gpus",
        type=float,
        metavar="X",
        help="GPUs Ray reserves per worker (default: 1 when the cluster has GPUs, else 0)",
    )
    p.add_argument(
        "--model", default=None, help="model folder or hub id (default: embedded SmolLM2)"
    )
    p.add_argument("--gguf-file", default=None, help="GGUF file in --model, or a path to one")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda if available)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _selection(text: str | None) -> list[int] | None:
    from steering.errors import InvalidInputError

    if text is None:
        return None
    numbers = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit() or int(part) < 1:
            raise InvalidInputError(
                f"--select takes vector numbers from 1, separated by commas, got {text!r}."
            )
        numbers.append(int(part) - 1)
    return numbers




def _resumed(argv: list[str]) -> list[str]:
    """`argv` after the command of the run it resumes, when it resumes one
    (later flags win), so `--resume JOURNAL` alone repeats the run."""
    probe = argparse.ArgumentParser(add_help=False)
    probe.add_argument("--resume")
    known, _ = probe.parse_known_args(argv)
    if known.resume is None:
        return argv
    from optimize.run.journal import read_journal
    from steering.errors import InvalidInputError

    command = read_journal(known.resume).identity.get("command")
    if not command:
        raise InvalidInputError(
            f"The journal {known.resume} was not written by {PROG}: resume it where it began."
        )
    return [*command, *argv]


def _without_resume(argv: list[str]) -> tuple[str, ...]:
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip or arg.startswith("--resume="):
            skip = False
        elif arg == "--resume":
            skip = True
        else:
            kept.append(arg)
    return tuple(kept)


def _workers(args: argparse.Namespace, recipe: object, indices: list[int]) -> object:
    from steering.errors import InvalidInputError

    if args.workers == 0:
        if args.ray is not None or args.num_gpus is not None:
            raise InvalidInputError("--ray and --num-gpus need --workers N (N from 1).")
        return None
    from optimize.workers.ray import RayOptions, RayWorkers

    address = None if args.ray in (None, "local") else args.ray
    return RayWorkers(recipe, indices, RayOptions(address, args.workers, args.num_gpus))  # type: ignore[arg-type]


def _run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from optimize import FitnessConfig, Progress, PsoConfig, SearchSpace, run_optimization
    from optimize.scoring.fitness import find_task
    from optimize.scoring.concept import CONCEPT_TASK
    from optimize.run.first_round import FINALISTS, FINALISTS_PHASE, FIRST_ROUND
    from optimize.config.guard import GuardSettings
    from optimize.guard.objective import uses_task
    from optimize.run.journal import JournalFile, journal_path
    from optimize.search.strategies import strategy_class
    from optimize.run.report import summary_lines
    from optimize.run.recipe import RunRecipe, search_fitness
    from optimize.run.optimization import check_heldout
    from steering import load_model, load_vectors, steerer_for
    from steering.errors import InvalidInputError
    from steering.outputs import check_output_path, default_data_dir, write_with_fallback

    concept = not uses_task(args.objective)  # concept strength scores no task
    for flag in ("vectors", "out") if concept else ("vectors", "out", "task"):
        if getattr(args, flag) is None:
            raise InvalidInputError(
                f"--{flag} is required (unless --resume repeats a run"
                + (")." if flag != "task" else ", or with --objective concept).")
            )
    if concept and (args.heldout_task is not None or args.guard_task is not None or args.workers):
        raise InvalidInputError(
            "--objective concept scores the vector's own held-out prompts in this process: "
            "it takes no --heldout-task, --guard-task or --workers."
        )
    fitness = FitnessConfig(
        task=args.task or CONCEPT_TASK,
        include_path=args.task_folder,
        metric=args.metric,
        limit=None if args.limit == 0 else args.limit,
        batch_size=args.batch_size,
        num_fewshot=args.num_fewshot,
    )
    pso = PsoConfig(
        particles=args.particles,
        iterations=args.iterations,
        c1=args.c1,
        c2=args.c2,
        w=args.w,
        seed=args.seed,
    )
    heldout = None
    if args.heldout_task is not None:
        heldout_limit = args.limit if args.heldout_limit is None else args.heldout_limit
        heldout = FitnessConfig(
            task=args.heldout_task,
            include_path=args.task_folder,
            metric=args.metric,
            limit=None if heldout_limit == 0 else heldout_limit,
            batch_size=args.batch_size,
            num_fewshot=args.num_fewshot,
        )
        check_heldout(fitness, heldout)
    elif args.heldout_limit is not None:
        raise InvalidInputError("--heldout-limit needs --heldout-task.")
    guard = GuardSettings.from_values(vars(args))
    strategy_class(args.strategy)  # an unknown name fails here
    split = None if concept else guard.split(args.seed, heldout)
    guard_task = guard.guard_config(fitness)
    first_round = guard.check_first_round(fitness, args.first_round)  # 0: none
    selection = _selection(args.select)
    out = check_output_path(args.out, "--out")
    vectors_path = Path(args.vectors)
    if not vectors_path.is_file():
        raise InvalidInputError(f"Vector file not found: {vectors_path}")
    if fitness.include_path and not concept:
        # cheap for a task folder: fail before loading the model
        for config in (fitness, heldout, guard_task):
            if config is not None:
                find_task(config)

    journal = JournalFile(
        Path(args.resume) if args.resume else journal_path(out),
        resume=args.resume is not None,
        command=args.command,
    )
    journal.check()
    loaded = load_model(args.model, args.gguf_file, args.device)
    steerer = steerer_for(loaded.model, loaded.tokenizer, loaded.name)
    vectors = load_vectors(vectors_path, steerer.info)
    space = SearchSpace(
        layer_min=0 if args.layer_min is None else args.layer_min,
        layer_max=steerer.info.num_layers - 1 if args.layer_max is None else args.layer_max,
        alpha_min=args.alpha_min,
        alpha_max=args.alpha_max,
        alpha_decimals=args.alpha_decimals,
        unit=args.unit,
        strength_min=args.strength_min,
        strength_max=args.strength_max,
    )
    steerer.set_vectors(vectors)
    indices = list(range(len(vectors))) if selection is None else selection

    cancel = threading.Event()
    bar = tqdm(
        total=1 + pso.evaluations + (0 if heldout is None and split is None else 2)
        + (FINALISTS if first_round else 0),
        unit="eval",
        desc="optimizing",
        disable=args.quiet,  # explicit: `python -m optimize` sets TQDM_DISABLE for the others
        file=sys.stderr,
        dynamic_ncols=True,
    )

    def on_progress(progress: Progress) -> None:
        label = {"heldout": "held-out", FIRST_ROUND: "first round", FINALISTS_PHASE: "finalists"}
        if progress.phase in label:
            bar.set_description_str(label[progress.phase])
        bar.update(progress.done - bar.n)
        best = "-" if progress.best_score is None else f"{progress.best_score:.3f}"
        bar.set_postfix_str(f"best {best}, baseline {progress.baseline:.3f}")

    def on_sigint(signum: int, frame: FrameType | None) -> None:
        if cancel.is_set():
            raise KeyboardInterrupt
        cancel.set()
        name = "Ctrl-C" if signum == signal.SIGINT else "SIGTERM"
        bar.write(
            f"{name}: stopping after the current evaluation ({name} again to abort).",
            file=sys.stderr,
        )

    recipe = RunRecipe.of_file(
        vectors_path, fitness, model=args.model, gguf_file=args.gguf_file, device=args.device,
        split=split, guard_task=guard_task,
    )  # fmt: skip
    # What the search scores, and so what Ray workers score: a first round's documents.
    first_recipe = dataclasses.replace(recipe, first_round=first_round)
    workers = _workers(args, first_recipe, indices)
    heldout_fitness = guard.heldout_fitness(steerer, fitness, heldout, split)
    previous = {sig: signal.signal(sig, on_sigint) for sig in (signal.SIGINT, signal.SIGTERM)}
    stack = ExitStack()
    try:
        # concept strength: the vector rebuilt from its prompts not held out,
        # scored on the held-out ones (optimize/scoring/concept.py), within the guard
        scored = (
            stack.enter_context(guard.concept_fitness(steerer, indices, args.seed, args.batch_size))
            if concept
            else search_fitness(steerer, recipe)
        )
        first = search_fitness(steerer, first_recipe) if first_round else None
        if workers is not None:
            bar.write(f"starting {args.workers} Ray worker(s)...", file=sys.stderr)
            workers.start()  # type: ignore[attr-defined]
        result = run_optimization(
            steerer,
            indices,
            scored,
            space,
            pso,
            on_progress=on_progress,
            cancel=cancel,
            heldout=heldout_fitness,
            objective=guard.objective,
            objective_options=guard.options,
            workers=workers,  # type: ignore[arg-type]
            journal=journal,
            strategy=args.strategy,
            first_round=first,
        )
    finally:
        stack.close()  # the full vector back after a concept run
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        bar.close()
        if workers is not None:
            workers.close()  # type: ignore[attr-defined]
    saved, note = write_with_fallback(result.save, out, default_data_dir() / "results")
    if not result.cancelled:
        journal.finish()

    lines = summary_lines(result)
    if result.heldout is None and heldout_fitness is not None:
        lines.append("held-out documents not scored: the run was cancelled")
    cached = sum(1 for e in result.evaluations if e.cached)
    lines.append(
        f"{len(result.evaluations)} evaluations ({cached} cached) in "
        f"{result.wall_seconds:.1f} s" + (" - cancelled" if result.cancelled else "")
    )
    lines.append(f"saved {saved}")
    if result.cancelled:
        lines.append(f"to finish this run: {PROG} --resume {journal.path}")
    print("\n".join(lines))
    if note:
        print(f"{PROG}: error: {note}", file=sys.stderr)
        return 1
    return 0


def _quiet_libraries() -> None:
    # lm-eval's chatter would bury our progress bar; real warnings still show.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for name in ("lm_eval", "transformers", "datasets"):
        logging.getLogger(name).setLevel(logging.ERROR)


def main(argv: Sequence[str] | None = None) -> int:
    given = list(sys.argv[1:] if argv is None else argv)
    # Imported after parsing, so that --help and usage errors are instant.
    from steering.errors import SteerSwarmError

    try:
        args = _parser().parse_args(_resumed(given))
    except SteerSwarmError as exc:
        print(f"{PROG}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    args.command = _without_resume(given)
    _quiet_libraries()
    started = time.perf_counter()
    try:
        return _run(args)
    except SteerSwarmError as exc:
        message = " ".join(str(exc).split())
        print(f"{PROG}: error: {message}", file=sys.stderr)
        return 1
    except OSError as exc:
        from steering.outputs import reason

        where = f"{exc.filename}: " if exc.filename else ""
        print(f"{PROG}: error: {where}{reason(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            f"{PROG}: aborted after {time.perf_counter() - started:.0f} s; no result saved "
            f"(what was scored is in the journal: {PROG} --resume JOURNAL)",
            file=sys.stderr,
        )
        return 130
