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

`python -m optimize export-lm-eval --result R.json --vectors FILE --out
steer.pt` writes a result's recommended setting for lm-eval's own steered
model (optimize/run/lm_eval_export.py).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn

from optimize.config.table import add_arguments

if TYPE_CHECKING:
    from optimize.run.assembly import RunRecipe
    from optimize.workers.ray import RayWorkers

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


def _workers(
    args: argparse.Namespace, count: int, recipe: RunRecipe, indices: list[int]
) -> RayWorkers | None:
    """`count` Ray workers for the run (not started), or None for 0."""
    if not count:
        return None
    from optimize.workers.ray import RayOptions, RayWorkers

    address = None if args.ray in (None, "local") else args.ray
    return RayWorkers(recipe, indices, RayOptions(address, count, args.num_gpus))


def _run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from optimize import Progress, run_optimization
    from optimize.config.table import CLI, fields
    from optimize.run.assembly import RunRecipe, assembled
    from optimize.run.journal import JournalFile, journal_path
    from optimize.run.plan import plan_lines
    from optimize.run.report import evaluations_line, summary_lines
    from optimize.run.settings import RunSettings
    from steering import load_model, load_vectors, steerer_for
    from steering.errors import InvalidInputError
    from steering.lm_eval_tasks import find_task
    from steering.outputs import check_output_path, default_data_dir, write_with_fallback

    given = {f.name: getattr(args, f.name) for f in fields(CLI) if hasattr(args, f.name)}
    settings = RunSettings.from_values(given)  # every setting checked before the model loads
    for flag in ("vectors", "out"):
        if getattr(args, flag) is None:
            raise InvalidInputError(f"--{flag} is required (unless --resume repeats a run).")
    selection = _selection(args.select)
    out = check_output_path(args.out, "--out")
    vectors_path = Path(args.vectors)
    if not vectors_path.is_file():
        raise InvalidInputError(f"Vector file not found: {vectors_path}")
    if settings.fitness.include_path and settings.scores_task:
        # cheap for a task folder: fail before loading the model
        for config in (settings.fitness, settings.heldout, settings.guard_task):
            if config is not None:
                find_task(config.task, config.include_path)
    if not settings.workers and (args.ray is not None or args.num_gpus is not None):
        raise InvalidInputError("--ray and --num-gpus need --workers N (N from 1).")

    journal = JournalFile(
        Path(args.resume) if args.resume else journal_path(out),
        resume=args.resume is not None,
        command=args.command,
    )
    journal.check()
    loaded = load_model(args.model, args.gguf_file, args.device)
    steerer = steerer_for(loaded.model, loaded.tokenizer, loaded.name)
    vectors = load_vectors(vectors_path, steerer.info)
    steerer.set_vectors(vectors)
    indices = list(range(len(vectors))) if selection is None else selection
    settings.check_vectors(len(indices))
    settings.space(steerer.info.num_layers).check_model(steerer.info.num_layers, steerer.info.name)
    recipe = RunRecipe.of_file(
        vectors_path, settings, model=args.model, gguf_file=args.gguf_file, device=args.device
    )
    workers = _workers(args, settings.workers, recipe, indices)
    cancel = threading.Event()
    bar: Any = None
    said: list[str] = []

    def on_progress(progress: Progress) -> None:
        if progress.note and not said:  # the time budget's plan, once
            said.append(progress.note)
            bar.write(progress.note, file=sys.stderr)
        label = {"heldout": "held-out", "confirm": "confirming"}
        if progress.phase in label:
            bar.set_description_str(label[progress.phase])
        bar.total = progress.total
        bar.update(progress.done - bar.n)
        top = "-" if progress.best_score is None else f"{progress.best_score:.3f}"
        bar.set_postfix_str(f"top score {top}, baseline {progress.baseline:.3f}")

    stopped_by: list[int] = []  # the signal that cancelled the run: the exit status says so

    def on_sigint(signum: int, frame: FrameType | None) -> None:
        if cancel.is_set():
            raise KeyboardInterrupt
        stopped_by.append(signum)
        cancel.set()
        name = "Ctrl-C" if signum == signal.SIGINT else "SIGTERM"
        message = f"{name}: stopping after the current evaluation ({name} again to abort)."
        if bar is None:
            print(message, file=sys.stderr)
        else:
            bar.write(message, file=sys.stderr)

    previous = {sig: signal.signal(sig, on_sigint) for sig in (signal.SIGINT, signal.SIGTERM)}
    started = time.perf_counter()  # a time budget counts from here
    try:
        if not args.quiet:
            print("preparing: loading the task and measuring the baseline model on neutral text",
                  file=sys.stderr)
        with assembled(settings, steerer, indices) as plan:
            if not args.quiet:
                others = len(vectors) - len(indices)
                print("\n".join(plan_lines(settings, plan, others)), file=sys.stderr)
            bar = tqdm(
                total=plan.total,
                unit="eval",
                desc="optimizing",
                disable=args.quiet,  # explicit: `python -m optimize` sets TQDM_DISABLE for others
                file=sys.stderr,
                dynamic_ncols=True,
            )
            if workers is not None:
                bar.write(f"starting {settings.workers} Ray worker(s)...", file=sys.stderr)
                workers.start(cancel)  # Ctrl-C stops the start too
            result = run_optimization(
                steerer,
                indices,
                plan,
                on_progress=on_progress,
                cancel=cancel,
                workers=workers,
                journal=journal,
                settings=settings.to_values(),
                started=started,
            )
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if bar is not None:
            bar.close()
        if workers is not None:
            workers.close()
    saved, note = write_with_fallback(result.save, out, default_data_dir() / "results")
    if not result.cancelled:
        journal.finish()

    lines = summary_lines(result)
    lines.append(evaluations_line(result))
    lines.append(f"saved {saved}")
    if result.cancelled:
        lines.append(f"to finish this run: {PROG} --resume {journal.path}")
    print("\n".join(lines))
    if note:
        print(f"{PROG}: error: {note}", file=sys.stderr)
        return 1
    # Stopped by Ctrl-C or SIGTERM: the partial result is saved, and the exit
    # status (130 / 143, as a shell reports a signal) tells a script the run
    # did not finish (it exited 0, as if it had).
    return 128 + int(stopped_by[0]) if stopped_by and result.cancelled else 0


def _quiet_libraries() -> None:
    # lm-eval's chatter would bury our progress bar; real warnings still show.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for name in ("lm_eval", "transformers", "datasets"):
        logging.getLogger(name).setLevel(logging.ERROR)


def main(argv: Sequence[str] | None = None) -> int:
    given = list(sys.argv[1:] if argv is None else argv)
    if given[:1] == ["export-lm-eval"]:
        from optimize.run.lm_eval_export import main as export_main

        _quiet_libraries()
        return export_main(given[1:])
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
