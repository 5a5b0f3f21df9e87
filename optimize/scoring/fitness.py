"""Scoring a steering setting with lm-eval on the already-loaded model.

`LmEvalFitness` is built once per optimization run: it wraps the model in one
HFLM, indexes and loads the task once, and builds the task's requests (prompts,
few-shot contexts) once. Each `evaluate(vectors)` then only clears the
responses, runs the model on the same requests with `vectors` applied, and
aggregates the metric. That is lm-eval's `evaluate()` for one process, minus
rebuilding the requests per call (which would redraw few-shot examples from a
sampler whose random state moves on), minus bootstrap, sample logging, any
response cache (a cache keyed on the request would ignore the steering) and
any reseeding of global random state.

The one place the model runs is `_run_requests`. Loglikelihood requests
(multiple-choice tasks) go through a `PrefixScorer` when the model's layout
allows it: it runs the layers below the lowest steered layer once per input
and reuses them for every setting, runs the LM head only where a token is
scored, and gives lm-eval's own (loglikelihood, is_greedy) answers (checked
against lm-eval on one batch when built). Other request types, and models it
does not support, go through lm-eval's HFLM.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from optimize.config.configs import FitnessConfig
from optimize.errors import FitnessError, lm_eval_failures, short_message as _short
from optimize.guard.split import SEARCH, SIDE_NAMES, SIDES, DocumentSplit
from optimize.scoring.metrics import Metrics
from optimize.scoring.prefix import PrefixScorer
from steering import lm_eval_tasks
from steering.batched import checked_deltas, row_limit
from steering.engine import Steerer
from steering.errors import InvalidInputError
from steering.extract.task_pairs import doc_key, reserved_keys
from steering.layer_cache import DEFAULT_CACHE_BYTES
from steering.rng import preserved_rng
from steering.vector import SteeringVector

log = logging.getLogger(__name__)

# lm-eval's default few-shot seed (DEFAULT_OTHER_SEED): the same few-shot
# examples simple_evaluate would draw. It seeds the task's own sampler only.
FEWSHOT_SEED = 1234


@dataclass(frozen=True)
class FitnessOutcome:
    """One scoring of one steering setting.

    `stderr` is the standard error of the mean of the per-document metric
    values, sqrt(sample variance / n) (lm-eval's own `mean_stderr`, the
    `acc_stderr` it reports; for 0/1 accuracy this is sqrt(p(1-p)/(n-1))),
    pooled over the documents of every task in a group. It is NaN when the
    metric is not aggregated by a mean, or when there is a single document.
    `responses` are the model's raw answers per request, in request order;
    `per_document` the target metric's value per document, in document order
    (what a paired test compares).
    """

    score: float
    stderr: float
    samples: int
    responses: tuple[Any, ...] = field(repr=False, default=())
    per_document: tuple[float, ...] = field(repr=False, default=())

    @property
    def metrics(self) -> Metrics:
        """The score and its standard error as named metrics."""
        return Metrics.of_target(self.score, self.stderr)


@dataclass
class _TaskPlan:
    name: str
    task: Any
    docs: list[tuple[int, Any]]
    instances_by_doc: dict[int, list[Any]]


def find_task(config: FitnessConfig) -> Any:
    """An lm-eval TaskManager that knows `config.task` (`steering.lm_eval_tasks.find_task`)."""
    return lm_eval_tasks.find_task(config.task, config.include_path)


class LmEvalFitness:
    """Scores steering settings on one lm-eval task with the loaded model (an
    `optimize.scoring.metrics.Fitness`: the task's metric is the "target").

    With `prefix_cache` (the default), loglikelihood requests are scored by a
    `PrefixScorer` that keeps the hidden states below the steering in up to
    `cache_bytes` of memory (0: keep none, run every layer every time). Its
    answers equal lm-eval's; `prefix_cache=False` scores through lm-eval.

    With `split`, only one `side` of each task's documents is scored
    (`optimize.guard.split`: SEARCH, CONFIRM or HELDOUT); `documents` says
    which, for people. With `part` (start, stop), fractions of that side's
    documents in their order, only those (`optimize.scoring.racing`: a
    setting's first documents, then the rest only when it is worth it).

    Documents whose key (`steering.extract.task_pairs.doc_key`) is in
    `exclude` are never scored; the limit counts the documents left. None
    (the default) excludes the documents the steerer's active task vectors
    were built from, so a vector is never graded on its own training data.
    `metrics_many` passes take at most `batch_memory` bytes (None: sized
    from the memory free at the time). `checked_with`, another part of the
    same task on the same model whose prefix scorer was checked against
    lm-eval's answers, spares this one the check (and scores through lm-eval
    when that one does).
    """

    def __init__(
        self,
        steerer: Steerer,
        config: FitnessConfig,
        *,
        prefix_cache: bool = True,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        split: DocumentSplit | None = None,
        side: str = SEARCH,
        exclude: frozenset[str] | None = None,
        batch_memory: int | None = None,
        part: tuple[float, float] | None = None,
        checked_with: LmEvalFitness | None = None,
    ) -> None:
        if side not in SIDES:
            raise ValueError(f"side must be one of {SIDES}, got {side!r}")
        self.steerer = steerer
        self.config = config
        self.split = split
        self.side = side
        self.part = part
        self.exclude = reserved_keys(steerer.vectors) if exclude is None else frozenset(exclude)
        self.excluded = 0  # documents left out (counted while building the requests)
        self.batch_memory = batch_memory
        with preserved_rng():
            self._tasks, self._groups = self._load_tasks()
            self.metric, self.filter, self.higher_is_better = self._resolve_metric()
            self._plans = self._build_requests()
            self.lm = self._build_lm()
        self._requests: dict[str, list[Any]] = defaultdict(list)
        for plan in self._plans:
            for instance in plan.task.instances:
                self._requests[instance.request_type].extend([instance] * (instance.repeats or 1))
        self.samples = sum(len(plan.docs) for plan in self._plans)
        self.documents = (
            f"all {self.samples} documents"
            if split is None
            else f"the {self.samples} {SIDE_NAMES[side]} documents (split seed {split.seed})"
        )
        self.prefix_scorer: PrefixScorer | None = None
        sibling = checked_with
        if sibling is not None and (
            sibling.steerer is not steerer or sibling.config.task != config.task
        ):
            raise ValueError("checked_with must be a part of the same task on the same model")
        if sibling is not None and sibling.prefix_scorer is None:
            prefix_cache = False  # it scores through lm-eval: so does this part
        if prefix_cache and self._requests.get("loglikelihood"):
            with preserved_rng():
                self.prefix_scorer = PrefixScorer.build(
                    steerer,
                    self.lm,
                    self._requests["loglikelihood"],
                    config.batch_size,
                    cache_bytes,
                    check=sibling is None,
                )

    def document_ids(self) -> dict[str, list[int]]:
        """The lm-eval ids of the documents each task scores here, in the form
        of lm-eval's `samples` argument (`lm_eval --samples`): given them,
        lm-eval scores exactly these documents."""
        return {plan.name: [doc_id for doc_id, _doc in plan.docs] for plan in self._plans}

    def requests(self, request_type: str = "loglikelihood") -> list[Any]:
        """The requests of one type that every evaluation sends, in order."""
        return list(self._requests.get(request_type, []))

    @property
    def metric_key(self) -> str:
        """The metric as lm-eval names it in its results ("acc,none")."""
        return f"{self.metric},{self.filter}"

    # ---------------------------------------------------------------- building

    def _build_lm(self) -> Any:
        from lm_eval.models.huggingface import HFLM

        try:
            return HFLM(
                pretrained=self.steerer.model,
                tokenizer=self.steerer.tokenizer,
                batch_size=self.config.batch_size,
            )
        except Exception as exc:  # lm-eval raises untyped errors
            raise FitnessError(
                f"lm-eval cannot wrap {self.steerer.info.name}: {_short(exc)}"
            ) from exc

    def _load_tasks(self) -> tuple[dict[str, Any], dict[str, Any]]:
        name = self.config.task
        manager = find_task(self.config)
        try:
            loaded = manager.load([name])
        except Exception as exc:
            raise FitnessError(f"lm-eval could not load the task {name!r}: {_short(exc)}") from exc
        tasks, groups = dict(loaded["tasks"]), dict(loaded["groups"])
        if not tasks:
            raise FitnessError(f"The lm-eval task {name!r} has no subtasks to run.")
        for task in tasks.values():
            # As simple_evaluate does: a task whose config fixes 0 shots keeps 0.
            if task.get_config("num_fewshot") != 0:
                task.set_config(key="num_fewshot", value=self.config.num_fewshot)
            task.set_fewshot_seed(seed=FEWSHOT_SEED)
        return tasks, groups

    def _resolve_metric(self) -> tuple[str, str, bool]:
        name = self.config.task
        metric, _, wanted_filter = self.config.metric.partition(",")
        metric, wanted_filter = metric.strip(), wanted_filter.strip()
        group = self._groups.get(name)
        if group is not None:
            offered = [a.metric for a in (group.aggregate_metric_list or [])]
            if not offered:
                raise InvalidInputError(
                    f"The group {name!r} reports no combined score; pick one of its "
                    f"tasks: {', '.join(sorted(self._tasks))}."
                )
            if metric not in offered:
                raise InvalidInputError(
                    f"The group {name!r} has no combined {metric!r}; it combines: "
                    f"{', '.join(offered)}."
                )
        filters: list[str] | None = None
        first = next(iter(self._tasks.values()))
        higher_is_better = first.higher_is_better().get(metric) is not False
        for task_name, task in self._tasks.items():
            reported = set(task.aggregation()) | set(getattr(task, "_metric_fn_list", {}))
            if metric not in reported:
                raise InvalidInputError(
                    f"Metric {metric!r} is not reported by the task {task_name!r}; it "
                    f"reports: {', '.join(sorted(reported)) or 'nothing'}."
                )
            names = [f.name for f in getattr(task, "_filters", [])] or ["none"]
            filters = names if filters is None else [f for f in filters if f in names]
        filters = filters or ["none"]
        if wanted_filter:
            if wanted_filter not in filters:
                raise InvalidInputError(
                    f"The filter {wanted_filter!r} of metric {self.config.metric!r} is not "
                    f"used by {name!r}; its filters are: {', '.join(filters)}."
                )
            chosen = wanted_filter
        else:
            chosen = "none" if "none" in filters else filters[0]
        return metric, chosen, higher_is_better

    def _build_requests(self) -> list[_TaskPlan]:
        from lm_eval.evaluator_utils import get_sample_size

        plans = []
        for name, task in self._tasks.items():
            limit = get_sample_size(task, self.config.limit)
            samples = self._kept_documents(task, limit)
            if samples is not None:
                limit = None
            try:
                task.build_all_requests(
                    limit=limit,
                    samples=samples,
                    rank=0,
                    world_size=1,
                    cache_requests=False,
                    rewrite_requests_cache=False,
                    system_instruction=None,
                    apply_chat_template=False,
                    fewshot_as_multiturn=False,
                    chat_template=None,
                    tokenizer_name="",
                )
                docs = list(
                    task.doc_iterator(rank=0, limit=limit, world_size=1, samples=samples)
                )
            except Exception as exc:
                raise FitnessError(
                    f"lm-eval could not build the prompts of the task {name!r}: {_short(exc)}"
                ) from exc
            if self.split is not None:
                docs = [docs[i] for i in self.split.parts(len(docs))[self.side]]
            if self.part is not None:
                docs = docs[round(self.part[0] * len(docs)) : round(self.part[1] * len(docs))]
            if self.split is not None or self.part is not None:
                kept = {doc_id for doc_id, _ in docs}
                task._instances = [i for i in task.instances if i.doc_id in kept]
            by_doc: dict[int, list[Any]] = defaultdict(list)
            for instance in task.instances:
                by_doc[instance.doc_id].append(instance)
            for instances in by_doc.values():
                instances.sort(key=lambda inst: inst.idx)
            plans.append(_TaskPlan(name, task, docs, dict(by_doc)))
        return plans

    def _kept_documents(self, task: Any, limit: int | None) -> list[int] | None:
        """The ids of the first `limit` documents not in `exclude` (None: no
        document is excluded, score lm-eval's first `limit`)."""
        if not self.exclude:
            return None
        kept = [i for i, doc in enumerate(task.eval_docs) if doc_key(doc) not in self.exclude]
        self.excluded += len(task.eval_docs) - len(kept)
        if not kept:
            raise InvalidInputError(
                f"Every document of {task.config.task!r} was used to build a task vector, "
                "so none is left to score."
            )
        return kept if limit is None else kept[:limit]

    # ---------------------------------------------------------------- scoring

    def metrics(self, vectors: Sequence[SteeringVector]) -> Metrics:
        """The named metrics of the model steered by exactly `vectors`."""
        return self.evaluate(vectors).metrics

    def document_scores(
        self, vectors: Sequence[SteeringVector]
    ) -> tuple[Metrics, tuple[float, ...]]:
        """The named metrics and the target metric per document, in document order."""
        outcome = self.evaluate(vectors)
        return outcome.metrics, outcome.per_document

    def score(self, vectors: Sequence[SteeringVector]) -> tuple[float, float]:
        """(score, standard error) of the model steered by exactly `vectors`."""
        outcome = self.evaluate(vectors)
        return outcome.score, outcome.stderr

    def evaluate(self, vectors: Sequence[SteeringVector]) -> FitnessOutcome:
        """Score the model steered by exactly `vectors` (() for unsteered).

        The previously active vectors are back afterwards, whatever happens.

        Raises:
            FitnessError: lm-eval failed; the message says how.
        """
        with preserved_rng(), self.steerer.applied(vectors), lm_eval_failures(self.config.task):
            return self._outcome(self._run_requests())

    def metrics_many(self, settings: Sequence[Sequence[SteeringVector]]) -> list[Metrics]:
        """`metrics` of each of `settings` (vector lists) in shared passes
        (`PrefixScorer.score_many`, `optimize.scoring.batched`): equal to each one's
        own up to float rounding. Other request types, or models the scorer
        does not support, are scored one setting after another."""
        return [outcome.metrics for outcome in self.outcomes_many(settings)]

    def outcomes_many(self, settings: Sequence[Sequence[SteeringVector]]) -> list[FitnessOutcome]:
        """`evaluate` of each of `settings`, in shared passes where it can (`metrics_many`)."""
        scorer = self.prefix_scorer
        if scorer is None or set(self._requests) != {"loglikelihood"}:
            return [self.evaluate(vectors) for vectors in settings]
        deltas = checked_deltas(self.steerer, settings)
        with preserved_rng(), lm_eval_failures(self.config.task):
            limit = row_limit(scorer, self.batch_memory)
            answers = scorer.score_many(self.steerer, deltas, limit)
            return [self._outcome({"loglikelihood": a}) for a in answers]

    @property
    def per_document_mean(self) -> bool:
        """Whether the score is the mean of the per-document values (one task,
        a mean-aggregated metric): what lets a score be built from parts."""
        from lm_eval.api.metrics import mean

        if len(self._plans) != 1 or self._groups.get(self.config.task) is not None:
            return False
        return bool(self._plans[0].task.aggregation().get(self.metric, mean) is mean)

    def _outcome(self, answers: dict[str, list[Any]]) -> FitnessOutcome:
        """Attach `answers` (per request type, in request order) to the
        requests, as lm-eval's evaluate() does, and compute the metric."""
        from lm_eval.api.metrics import mean, mean_stderr
        from lm_eval.evaluator_utils import _process_results

        responses = self._attach(answers)
        results_acc: dict[str, Any] = {}
        pooled: list[float] = []
        all_means = True
        for plan in self._plans:
            task = plan.task
            task.apply_filters()
            raw: dict[tuple[str, str], list[Any]] = defaultdict(list)
            for filter_key in task.instances[0].filtered_resps:
                for doc_id, doc in plan.docs:
                    requests = plan.instances_by_doc[doc_id]
                    metrics = task.process_results(
                        doc, [req.filtered_resps[filter_key] for req in requests]
                    )
                    for metric, value in metrics.items():
                        raw[(metric, filter_key)].append(value)
            results_acc[plan.name] = {"task": task, "raw_metrics": raw, "logged_samples": []}
            pooled.extend(raw.get((self.metric, self.filter), []))
            all_means = all_means and task.aggregation().get(self.metric, mean) is mean
        results = _process_results(results_acc, self._groups, bootstrap_iters=0)
        top = self.config.task if self.config.task in results.metrics else next(iter(self._tasks))
        value = results.metrics[top].get(self.metric_key)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise FitnessError(
                f"lm-eval reported no {self.metric_key!r} for {self.config.task!r} (got {value!r})."
            )
        stderr = (
            float(mean_stderr([float(v) for v in pooled]))
            if all_means and len(pooled) > 1
            else math.nan
        )
        return FitnessOutcome(
            score=float(value),
            stderr=stderr,
            samples=self.samples,
            responses=responses,
            per_document=tuple(float(v) for v in pooled),
        )

    def _run_requests(self) -> dict[str, list[Any]]:
        """Run the model on every request, with whatever steering is active:
        the answers per request type, in request order."""
        answers = {}
        for request_type, requests in self._requests.items():
            if request_type == "loglikelihood" and self.prefix_scorer is not None:
                steered = self.steerer.steered_layers()
                answers[request_type] = self.prefix_scorer.score(min(steered) if steered else None)
            else:
                answers[request_type] = getattr(self.lm, request_type)(requests, disable_tqdm=True)
        return answers

    def _attach(self, answers: dict[str, list[Any]]) -> tuple[Any, ...]:
        """Put each answer on its request (replacing any before)."""
        for plan in self._plans:
            for instance in plan.task.instances:
                instance.resps = []
                instance.filtered_resps = {}
        ordered = []
        for request_type, requests in self._requests.items():
            for answer, request in zip(answers[request_type], requests, strict=True):
                request.resps.append(answer)
            ordered.extend(answers[request_type])
        return tuple(ordered)
