"""The Optimize tab: search the layer and strength of chosen vectors with a
particle swarm scored by lm-eval, watch it live, read the verdict and apply
the recommended setting.

The run holds the model lock from start to end (in a job thread), so chat and
vector changes wait for it and say so. "Cancel" stops it after the current
evaluation; the active vectors are left exactly as they were until the user
clicks "Apply best".
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gradio as gr

from optimize import (
    Evaluation,
    OptimizationResult,
    Progress,
    run_optimization,
)
from optimize.run.apply_rule import gained
from optimize.run.assembly import assembled
from optimize.run.plan import counted_sizes, plan_lines
from optimize.run.settings import default_layer_range
from optimize.scoring.task_sources import AllowedTaskSources
from presets import load_preset
from steering.errors import InvalidInputError, JobCancelled, NoModelError, SteerSwarmError
from steering.progress import JobControl
from steering.session import ModelSession
from ui import format as fmt, plots
from ui.front_panel import ApplyView, FrontActions, best_offer
from ui.jobs import WAITING, BackgroundJob, JobProgress, JobRegistry, RunStatus
from ui.long_run import LongRunGate, LongRunQuestion
from ui.model_access import model_facts, peek_facts
from ui.model_jobs import OPTIMIZE, busy
from ui.optimize_form import NAMES, TASKS_DIR, RunRequest, parse_request, parse_settings
from ui.optimize_layout import OptimizeTab, build, vectors_info
from ui.optimize_resume import new_journal, resumable, resume_offer, workers_for

__all__ = [
    "TASKS_DIR",
    "OptimizeActions",
    "OptimizeTab",
    "RunRequest",
    "build",
    "default_layer_range",
    "parse_request",
]

log = logging.getLogger(__name__)

# What a run's view fills, in this order (OptimizeTab.view_outputs): the
# progress bar, the evaluations table, the two plots, the numbers, the result
# (a gr.State), its file, the verdict card, "Apply best", the front's plot,
# point choice and button, "Go on", the folded details, and the status line.
VIEW = (
    "progress", "evaluations", "convergence", "particles", "summary", "result", "result_file",
    "card", "apply", "front_plot", "front_point", "front_apply", "go_on", "details", "status",
)
OptimizeView = tuple[Any, ...]


def view(**values: Any) -> OptimizeView:
    """A view with `values` by name (VIEW) and no change elsewhere."""
    unknown = set(values) - set(VIEW)
    if unknown:
        raise ValueError(f"not a part of the Optimize view: {sorted(unknown)}")
    return tuple(values[name] if name in values else gr.update() for name in VIEW)


# What `result_view` fills, in its order.
RESULT_PARTS = ("card", "summary", "apply", "front_point", "front_apply")
# Said under every plan: a run holds the model.
HOLDS = (
    "It holds the model: chat replies (the webui's too) and vector changes wait until it "
    "ends; the status line shows the time left once the first setting is scored."
)


def _hidden() -> Any:
    return gr.update(visible=False)


# What a new run clears: the previous result is gone from the page (its file
# stays in the results folder and the Saved tab) and nothing can be applied
# until this run's verdict says so.
_CLEARED: dict[str, Any] = {
    "evaluations": [], "convergence": None, "particles": None, "summary": "", "result": None,
    "result_file": gr.update(value=None, visible=False), "card": "",
    "apply": gr.update(visible=False), "front_plot": None,
    "front_point": gr.update(choices=[], value=None, visible=False),
    "front_apply": gr.update(visible=False), "go_on": gr.update(visible=False),
    "details": gr.update(open=True),  # the live plots and table of the new run
}


class OptimizeActions:
    """The Optimize tab's handlers. One run at a time per app (the model is one).

    A run is a job of the app (`jobs`), not of the page that started it: a
    reloaded or second page attaches to it (`attach`), sees its progress and
    result, and can cancel it.
    """

    def __init__(
        self,
        session: ModelSession,
        save_dir: Path | None = None,
        sources: AllowedTaskSources | None = None,
        jobs: JobRegistry | None = None,
    ) -> None:
        """`save_dir`: where results are saved (None: not saved); `sources`:
        the task folders the operator allowed (None: the shipped tasks);
        `jobs`: the app's job registry (None: one of this tab's own)."""
        self.session = session
        self.save_dir = save_dir
        self.sources = sources or AllowedTaskSources()
        self.jobs = jobs or JobRegistry()
        # How far the run has got: the webui hook tells a waiting chat reply.
        self.run_status = RunStatus()
        # A run estimated longer asks first (the app's threshold; tests lower it).
        self.long_run_seconds: float = self.jobs.limits.confirm_seconds
        # The result's front, and applying its best setting or any point of it.
        self.front = FrontActions(session, self.vector_choices, self.jobs)

    # -- views ---------------------------------------------------------------

    def vector_choices(self, selected: list[str] | None = None) -> Any:
        """The active vectors as choices, keeping the still-valid selection
        (all of them when none is). Does not wait while the model is busy."""
        facts = peek_facts(self.session)
        if facts is None:
            return gr.update()
        choices = fmt.vector_choices(facts[1])
        ids = [vector_id for _label, vector_id in choices]
        kept = [c for c in (selected or []) if c in ids]
        return gr.update(choices=choices, value=kept or ids, info=vectors_info(len(ids)))

    # -- handlers ------------------------------------------------------------

    def optimize(self, vectors: list[str] | None, *values: Any) -> Iterator[OptimizeView]:
        """Run the search, yielding the live view after every evaluation. While
        any job runs (this page's, another page's or another tab's) it only
        says so: the go-ahead a long run waits for is **Go on**, never a
        second click of this button."""
        if self.jobs.running is not None:
            yield view(status=busy(self.jobs.running))
            if self.jobs.running is not None and self.jobs.running.kind == OPTIMIZE:
                yield from self.attach()
            return
        if not vectors:  # "no model" explains an empty selection better
            _info, _vectors, problem = model_facts(self.session)
            if problem:
                yield view(status=fmt.failed("start the optimization", problem))
                return
        try:
            request = parse_request(vectors, *values, sources=self.sources)
        except SteerSwarmError as exc:
            yield view(status=fmt.failed("start the optimization", str(exc)))
            return
        # a concept run is not journalled: its journal could not say which
        # prompts were held out, so it could not be resumed (optimize_resume)
        journal = new_journal(self.save_dir) if request.settings.scores_task else None
        yield from self._start(_OptimizeWork(self.session, request, self.run_status, journal))

    def resume_offer(self) -> tuple[str, Any]:
        """The line offering to resume an interrupted run, and its button, as
        the results folder holds them now (the running run's own journal is
        not interrupted: it is left out)."""
        job = self.jobs.running
        journal = getattr(job.work, "journal", None) if job is not None else None
        return resume_offer(self.save_dir, None if journal is None else journal.path)

    def resume(self) -> Iterator[OptimizeView]:
        """Finish the newest interrupted run, scoring only what it had not scored."""
        try:
            request, journal = resumable(self.save_dir, self.sources)
        except SteerSwarmError as exc:
            yield view(status=fmt.failed("resume the run", str(exc)))
            return
        yield from self._start(_OptimizeWork(self.session, request, self.run_status, journal))

    def _start(self, work: _OptimizeWork) -> Iterator[OptimizeView]:
        limits = self.jobs.limits
        work.gate = LongRunGate(
            self.long_run_seconds, limits.answer_seconds, refuse=limits.refuse_seconds
        )
        job = BackgroundJob(
            self.session.lock, work, title="An optimization", kind=OPTIMIZE, gate=work.gate,
            note=self.run_status.waiting_note,
        )
        if self.jobs.start(job):
            yield from self._watch(job, work)
        else:
            yield view(status=busy(self.jobs.running))
            yield from self.attach()

    def attach(self) -> Iterator[OptimizeView]:
        """The app's latest optimization, for a page that (re)loads: its
        progress so far, then live, then its result; or the idle view."""
        job = self.jobs.latest_of(OPTIMIZE)
        if job is None or not isinstance(job.work, _OptimizeWork):
            yield view(progress=fmt.progress_html(None), status="")
            return
        yield from self._watch(job, job.work)

    def _watch(self, job: BackgroundJob, work: _OptimizeWork) -> Iterator[OptimizeView]:
        started = time.perf_counter() - job.age()
        history: list[Evaluation] = []
        best_so_far: list[float] = []
        last: Progress | None = None
        yield view(
            progress=fmt.progress_html(None, "Starting…"),
            **_CLEARED,
            status=(
                "Starting: loading the task, measuring the unsteered model on the neutral text "
                "(for the KL guard) and scoring the unsteered baseline…"
                if work.request.settings.scores_task
                else "Starting: rebuilding the vector from its prompts that are not held out, "
                "measuring the unsteered model on the neutral text (for the KL guard) and on "
                "the held-out prompts…"
            ),
        )
        try:
            for kind, item in job.follow():
                if kind == WAITING:
                    yield view(
                        progress=fmt.progress_html(None, "Waiting for the model…"),
                        status=fmt.WAITING,
                    )
                    continue
                if isinstance(item, LongRunQuestion):  # answered by Go on, shown only now
                    yield view(go_on=gr.update(visible=True), status=item.status())
                    continue
                if isinstance(item, JobProgress):  # a vector rebuilt at a new layer, a calibration
                    yield view(status=item.status())
                    continue
                last = item
                if last.latest is not None:
                    history.append(last.latest)
                    if not last.latest.is_baseline and last.best_score is not None:
                        best_so_far.append(last.best_score)
                yield view(
                    progress=fmt.progress_html(last, fmt.phase_note(last.phase)),
                    evaluations=fmt.evaluation_rows(history),
                    convergence=plots.convergence(history, last.baseline, best_so_far),
                    particles=plots.particles(
                        history, work.numbers, last.best, work.request.settings["unit"]
                    ),
                    go_on=_hidden(),
                    status=self._running_line(job, time.perf_counter() - started, last.note),
                )
        except JobCancelled as exc:  # before any setting was scored, or while Ray started
            yield view(
                progress=fmt.progress_html(last, "cancelled"),
                go_on=_hidden(),
                status=f"✕ {fmt.md(exc)} The active vectors are unchanged.",
            )
            return
        except SteerSwarmError as exc:
            yield view(
                progress=fmt.progress_html(last, "failed"),
                go_on=_hidden(),
                status=fmt.failed("run the optimization", str(exc)),
            )
            return
        except Exception as exc:  # the status line must say what happened
            log.exception("optimization failed")
            yield view(
                progress=fmt.progress_html(last, "failed"),
                go_on=_hidden(),
                status=fmt.failed(
                    "run the optimization", f"unexpected error {type(exc).__name__}: {exc}."
                ),
            )
            return
        result: OptimizationResult = job.result
        saved = work.saved(self._save, result)
        done = "✕ Cancelled." if result.cancelled else "✓ Done."
        verdict = result.verdict
        outcome = (
            "The active vectors are unchanged until you click **Apply best**."
            if gained(result)
            else "The active vectors are unchanged."
        )
        yield view(
            progress=fmt.progress_html(
                result.final_progress(), "cancelled" if result.cancelled else "done"
            ),
            evaluations=fmt.evaluation_rows(result.history),
            convergence=plots.convergence(
                result.history, result.baseline.score, result.running_best()
            ),
            particles=plots.particles(
                result.history, [i + 1 for i in result.vector_indices], result.best,
                result.space.unit,
            ),
            result=result,
            result_file=(
                gr.update(value=saved, visible=True) if saved is not None else _hidden()
            ),
            go_on=_hidden(),
            **self._result_parts(result),
            status=f"{done} {fmt.md(verdict.headline)} {outcome}",
        )

    def _active_ids(self) -> list[str] | None:
        """The active vectors' ids, or None while the model is busy (not known)."""
        facts = peek_facts(self.session)
        return None if facts is None else [vector.id for vector in facts[1]]

    def _result_parts(self, result: OptimizationResult) -> dict[str, Any]:
        """The verdict card, the numbers, Apply best and the front, for the
        vectors active now: a result whose vectors are gone offers nothing to
        apply and says so."""
        active = self._active_ids()
        gone = fmt.gone_vectors(result, active)
        plot, point, apply_point, apply = self.front.offer(result)
        if gone:
            point, apply_point, apply = _hidden(), _hidden(), _hidden()
        return {
            "card": fmt.verdict_card(result, gone),
            "summary": fmt.result_summary(result, active),
            "apply": apply,
            # no KL measured (no setting beat the baseline): no empty plot box
            "front_plot": gr.update(value=plot, visible=plot is not None),
            "front_point": point,
            "front_apply": apply_point,
        }

    def result_view(self, result: OptimizationResult | None) -> tuple[Any, ...]:
        """(card, summary, Apply best, front point, its button) of the result
        on this page, checked against the vectors active now: shown when the
        tab opens, so a summary never names as active a vector that is gone."""
        if result is None or self._active_ids() is None:
            return (gr.update(),) * 5
        parts = self._result_parts(result)
        return tuple(parts[name] for name in RESULT_PARTS)

    def plan(self, vectors: list[str] | None, *values: Any) -> str:
        """The plan line shown before a run: what the command line prints
        before it scores anything (optimize/run/plan.py), with the documents
        counted without the model, or what is wrong with the form."""
        try:
            settings = parse_settings(values, self.sources)
            chosen = set(vectors or ())
            facts = peek_facts(self.session)
            active = [] if facts is None else list(facts[1])
            prompts = next(
                ((len(v.prompts), len(v.contrast_prompts)) for v in active if v.id in chosen),
                None,
            )
            others = sum(1 for v in active if v.id not in chosen) if chosen else 0
            lines = plan_lines(settings, counted_sizes(settings, prompts), others)
        except SteerSwarmError as exc:
            return f"**Before you start:** ⚠ {fmt.md(exc)}"
        return "**Before you start:** " + " ".join(fmt.md(line) for line in lines) + " " + HOLDS

    def _running_line(self, job: BackgroundJob, elapsed: float, note: str = "") -> str:
        """The status line while the run goes (with its time budget's plan,
        once known); once Cancel was clicked it says so rather than flick back
        to "Optimizing"."""
        if job.cancel_event.is_set():
            return "✕ Cancelling: the run stops after the current evaluation…"
        left = self.run_status.left_seconds()
        eta = "" if left is None else f", about {left:.0f} s left"
        return (
            f"Optimizing ({elapsed:.0f} s{eta}). {fmt.md(note) + ' ' if note else ''}"
            "Chat replies (the webui's too) and vector changes wait until this run ends; "
            "**Cancel** stops it after the current evaluation."
        )

    def apply_offer(self, result: OptimizationResult | None) -> Any:
        """Offer "Apply best" only for a result whose verdict recommends a setting."""
        return best_offer(result)

    def _save(self, result: OptimizationResult) -> str | None:
        folder = self.save_dir
        if folder is None:
            return None
        try:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            Path(folder).mkdir(parents=True, exist_ok=True)
            path = result.save(Path(folder) / f"optimization-{stamp}.json")
            if self.session.data is not None:
                self.session.data.note_result(path)
            return str(path)
        except (OSError, ValueError):
            log.exception("could not save the optimization result")
            return None

    def example_settings(self, name: str = "sentiment") -> tuple[Any, ...]:
        """The preset's search settings put in the form (task, held-out task,
        limits, swarm, layer and alpha bounds, PSO options, seed) with no time
        budget (the example's own number of settings), then a status line. The
        layer bounds are kept inside the loaded model; the split and guard
        fields, which presets do not set, are left as they are."""
        try:
            preset = load_preset(name)
        except SteerSwarmError as exc:
            return (*(gr.update(),) * len(NAMES), fmt.failed("load the example", str(exc)))
        values = dict(preset.optimize)
        info = (peek_facts(self.session) or (None,))[0]  # busy: no check, no wait
        if info is not None:
            top = info.num_layers - 1
            values["layer_min"] = min(values["layer_min"], top)
            values["layer_max"] = min(values["layer_max"], top)
        values["task_folder"] = str(TASKS_DIR)
        values["budget"] = 0.0  # a budget would size the swarm: the example's is 6 x 5
        return (
            *(values.get(key, gr.update()) for key in NAMES),
            (
                f"✓ Filled in the search settings of the example “{preset.title}”: "
                f"{values['particles']} particles × {values['iterations']} iterations on "
                f"{values['limit']} documents of {values['task']}, then the baseline and the "
                f"best setting on {values['heldout_task']} (no time budget: the example's own "
                "size). Click **Optimize vectors**."
            ),
        )

    def cancel(self) -> str:
        """Cancel the app's running job (an optimization, or any other tab's
        job), whichever page started it."""
        job = self.jobs.running
        if job is not None and job.kind == OPTIMIZE:
            job.cancel()
            return "✕ Cancelling: the run stops after the current evaluation…"
        return self.jobs.cancel()

    def go_on(self) -> str:
        """Answer the running job's question: let the long run go on."""
        return self.jobs.go_on()

    def apply(self, result: OptimizationResult | None) -> Iterator[ApplyView]:
        """Make the result's best setting the active vectors.

        Yields (steering table, remove dropdown, steering status, optimize
        status, vector choices)."""
        yield from self.front.apply_best(result)


class _OptimizeWork:
    """The model work of one run, executed by a ModelJob under the model lock."""

    def __init__(
        self, session: ModelSession, request: RunRequest, status: RunStatus, journal: Any = None
    ) -> None:
        self.session = session
        self.request = request
        self.journal = journal  # a JournalFile: each evaluation is kept as it is scored
        self._saved_lock = threading.Lock()
        self._saved: list[str | None] = []  # the result file, once written
        # The chosen vectors' numbers (1-based), known once the run has
        # found them among the active vectors; read by the progress view.
        self.numbers: list[int] = []
        self.status = status
        self.gate = LongRunGate()  # asks before a long run goes on (the tab's threshold)

    def saved(self, save: Callable[[OptimizationResult], str | None], result: Any) -> str | None:
        """The result file: written by the first page that sees the result,
        the same file for every page after it."""
        with self._saved_lock:
            if not self._saved:
                self._saved.append(save(result))
            return self._saved[0]

    def __call__(self, emit: Callable[[Any], None], control: JobControl) -> OptimizationResult:
        steerer = (current := self.session.current()).steerer
        with steerer.controlled(control):  # a vector rebuilt at a new layer stops on Cancel
            return self._run(current, emit, control.cancel)

    def _run(
        self, current: Any, emit: Callable[[Any], None], cancel: threading.Event
    ) -> OptimizationResult:
        steerer = current.steerer

        def emit_while_current(progress: Any) -> None:
            # Called after every evaluation. The webui can unload or replace
            # its model while we hold the generation lock; stop rather than
            # go on scoring a model that is no longer the one in use.
            if not self.session.still_current(steerer):
                raise NoModelError(
                    f"The model changed during the optimization ({steerer.info.name} is no "
                    "longer the loaded model), so the run stopped."
                )
            self.status.advanced(progress.done, progress.total)
            emit(progress)
            self.status.paused(self.gate.check(progress, self.status.left_seconds(), emit, cancel))

        ids = [vector.id for vector in steerer.vectors]
        if not set(self.request.vector_ids) <= set(ids):
            raise InvalidInputError(
                "The active vectors changed since this tab was shown; "
                "check the selection and start again."
            )
        indices = tuple(ids.index(vector_id) for vector_id in self.request.vector_ids)
        self.numbers = [i + 1 for i in indices]
        settings = self.request.settings
        workers = None
        started = time.perf_counter()  # a time budget counts from here
        try:
            with assembled(settings, steerer, indices) as plan:
                self.status.started(plan.total)
                # started, models loaded; Cancel stops the start-up too
                workers = workers_for(current, settings, indices, cancel)
                result = run_optimization(
                    steerer,
                    indices,
                    plan,
                    on_progress=emit_while_current,
                    cancel=cancel,
                    workers=workers,
                    journal=self.journal,
                    settings=settings.to_values(),
                    started=started,
                )
        finally:
            # a concept run's full vector is back: "Apply best" moves it
            if workers is not None:
                workers.close()
            self.status.finished()
        if self.journal is not None and not result.cancelled:
            self.journal.finish()  # the run is complete: nothing to resume
        return result
