"""The capability guard: how far a steering setting moves the model on neutral text.

A setting that wins the target task can still break everything else. The
guard measures that cheaply, with no benchmark: the mean KL divergence
KL(unsteered || steered) of the next-token distributions over the token
positions of a small set of everyday sentences (`tasks/neutral/neutral.txt`).
KL 0 means the steered model predicts exactly as the unsteered one; the
default budget (`optimize.guard.objective.DEFAULT_KL_BUDGET`) is the largest mean KL at which the
embedded SmolLM2 still wrote fluent text (see `docs/guard.md`).

Cost per setting is one batched forward over the set. The layers below the
lowest steered layer are the same for every setting, so they run once
(`steering.layer_cache.LayerCache`), as for the task's own scoring. The unsteered
distributions are computed once and kept in a form as small as a hidden
state per position (`steering.kl.KlReference`).

Position 0 (the BOS token, whose prediction sees no text) and padding are
left out. Where the steered final state equals the unsteered one exactly (no
vectors, or alpha 0), the KL is exactly 0 rather than rounding noise.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from optimize.guard.objective import GUARD, GUARD_DROP, GUARD_STDERR, KL, KL_SKIPPED
from optimize.scoring import prefix
from optimize.scoring.metrics import PARTIAL, Fitness, Metrics
from steering.batched import checked_deltas, row_limit, run_many
from steering.bucketing import batch_cost_tokens, group_rows
from steering.engine import Steerer
from steering.errors import InvalidInputError, UnsupportedModelError
from steering.kl import KlReference
from steering.layer_cache import DEFAULT_CACHE_BYTES, LayerCache, layout_unsupported
from steering.neutral import neutral_sentences
from steering.rng import preserved_rng
from steering.vector import SteeringVector

# Sentences the guard scores by default: an evenly spaced subset of the set.
# The smallest size whose KL is within 10 % of the full 310 sentences' in at
# least 95 % of cases (random subsets, and the evenly spaced one, over 48
# settings of four vectors with a full-set KL of 0.2-1.0 on SmolLM2): 10 % is
# 0.05 nats at the default budget. 50 sentences (561 positions) cost half as
# much as the 100 used before (0.52x the CPU), at a 95th-percentile error of
# 9 % against 6 % (`python -m bench kl-sentences`, docs/guard.md).
DEFAULT_GUARD_SENTENCES = 50

@dataclass(frozen=True)
class KlOutcome:
    """The guard's measure of one setting: `kl` is the mean over `positions`
    scored token positions (nats per token) in `sentences` sentences."""

    kl: float
    positions: int
    sentences: int


@dataclass(frozen=True)
class _Batch:
    ids: torch.Tensor  # [rows, width], right-padded
    mask: torch.Tensor  # [rows, width] bool: real tokens
    scored: torch.Tensor  # [rows, width] bool: positions whose prediction is compared
    order: tuple[int, ...]  # each row's index in the texts the guard was built on


class KlGuard:
    """Mean KL(unsteered || steered) over a neutral text set, for any setting.

    Built once per run (it runs the unsteered model over the set once);
    `evaluate(vectors)` then scores a setting. Uses the layer cache on the
    layouts `steering.layer_cache` supports and a plain forward on other models.
    `batch_size` is the least number of sentences per batch (batches are
    cut as for the task's scoring: `steering.bucketing`).
    """

    def __init__(
        self,
        steerer: Steerer,
        texts: Sequence[str] | None = None,
        batch_size: int = 16,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        base: Sequence[SteeringVector] = (),
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InvalidInputError(
                f"The guard's batch size must be at least 1, got {batch_size!r}."
            )
        self.steerer = steerer
        self.base = tuple(base)
        model = steerer.model
        texts = neutral_sentences(count=DEFAULT_GUARD_SENTENCES) if texts is None else tuple(texts)
        self.sentences = len(texts)
        self.device = steerer.device
        self._batches = self._plan(steerer, texts, batch_size)
        self.positions = sum(int(b.scored.sum()) for b in self._batches)
        head = model.get_output_embeddings()
        if head is None or not isinstance(head, torch.nn.Linear):
            raise UnsupportedModelError(
                f"{steerer.info.name} has no plain linear output layer, so the KL guard "
                "cannot measure it."
            )
        self._head = head
        self._weight = head.weight.float()  # no copy for float32 models
        self._bias = None if head.bias is None else head.bias.float()
        why = layout_unsupported(model, steerer.layers)
        self._cache = (
            None
            if why is not None
            else LayerCache(model, [b.ids for b in self._batches], cache_bytes)
        )
        # The reference is the model as every setting of the run is compared
        # with: steered by the `base` vectors (the active vectors the run does
        # not tune), or not at all. Its time is about one setting's KL pass.
        started = time.perf_counter()
        with preserved_rng(), (steerer.applied(base) if base else steerer.unsteered()):
            try:
                hidden = self._final_states(check=True)
            except Exception:
                if self._cache is None:
                    raise
                # e.g. another transformers' mask helpers (the webui's): plain forwards
                self._cache = None
                hidden = self._final_states(check=True)
            self._reference = [self._make_reference(h) for h in hidden]
        self.reference_seconds = time.perf_counter() - started

    # ------------------------------------------------------------------ plan

    def _plan(self, steerer: Steerer, texts: Sequence[str], batch_size: int) -> list[_Batch]:
        tokenizer = steerer.tokenizer
        bos = tokenizer.bos_token_id
        limit = steerer.info.max_context
        rows = []
        for index, text in enumerate(texts):
            tokens = tokenizer.encode(text, add_special_tokens=False)
            tokens = ([bos] if bos is not None else []) + tokens
            if len(tokens) < 2:
                raise InvalidInputError(f"The neutral text {text!r} is too short to score.")
            rows.append((tokens[:limit], index))
        rows.sort(key=lambda r: (-len(r[0]), r))
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        least = prefix.MIN_BATCH_TOKENS
        cost = batch_cost_tokens(torch.device(self.device), least)
        batches = []
        start = 0
        for size in group_rows([len(r) for r, _ in rows], batch_size, least, cost):
            width = len(rows[start][0])
            chunk = rows[start : start + size]
            start += size
            ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.bool)
            for r, (row, _) in enumerate(chunk):
                ids[r, : len(row)] = torch.tensor(row, dtype=torch.long)
                mask[r, : len(row)] = True
            scored = mask.clone()
            scored[:, 0] = False  # the prediction from the BOS token alone
            batches.append(_Batch(
                ids.to(self.device), mask.to(self.device), scored.to(self.device),
                tuple(index for _, index in chunk),
            ))
        return batches

    # --------------------------------------------------------------- forward

    def _final_states(self, check: bool = False) -> list[torch.Tensor]:
        """Per batch, the final (normed) hidden states at the scored
        positions ([P, H]), with the model as it is now."""
        out: list[torch.Tensor] = []
        with torch.no_grad():
            if self._cache is not None:
                cache = self._cache
                steered = self.steerer.steered_layers()

                def finish(index: int, hidden: torch.Tensor) -> None:
                    out.append(cache.base.norm(hidden)[self._batches[index].scored])

                cache.run(min(steered) if steered else None, finish)
                return out
            for batch in self._batches:
                result = self.steerer.model(
                    input_ids=batch.ids, attention_mask=batch.mask, output_hidden_states=True
                )
                hidden = result.hidden_states[-1]
                if check and not torch.allclose(
                    self._head(hidden[batch.mask]).float(),
                    result.logits[batch.mask].float(),
                    rtol=1e-3,
                    atol=1e-3,
                ):
                    raise UnsupportedModelError(
                        f"{self.steerer.info.name} transforms its logits after the output "
                        "layer, so the KL guard cannot measure it."
                    )
                check = False
                out.append(hidden[batch.scored])
        return out

    def _make_reference(self, hidden: torch.Tensor) -> KlReference:
        return KlReference.of(hidden, self._weight, self._bias)

    # --------------------------------------------------------------- scoring

    def _is_reference(self, vectors: Sequence[SteeringVector]) -> bool:
        """Whether `vectors` are exactly the reference's (KL 0 without a pass)."""
        return len(vectors) == len(self.base) and all(
            a is b for a, b in zip(vectors, self.base, strict=True)
        )

    def evaluate(self, vectors: Sequence[SteeringVector]) -> KlOutcome:
        """KL(reference || steered by exactly `vectors`), mean over the scored
        positions; the reference is the model with the `base` vectors (none:
        unsteered). The previously active vectors are back afterwards."""
        total = 0.0
        if not self._is_reference(vectors):
            with preserved_rng(), self.steerer.applied(vectors):
                states = self._final_states()
            total = sum(
                float(self._kl(h, ref).sum())
                for h, ref in zip(states, self._reference, strict=True)
            )
        return KlOutcome(
            kl=total / self.positions, positions=self.positions, sentences=self.sentences
        )

    def evaluate_many(self, settings: Sequence[Sequence[SteeringVector]]) -> list[KlOutcome]:
        """`evaluate` for several settings in shared passes (one per batch of
        sentences, each setting's rows carrying its own deltas, the layers
        below the lowest steering run once: `optimize.scoring.batched.run_many`)."""
        outcomes = []
        for _setting, final in zip(settings, self._states_many(settings), strict=True):
            total = 0.0
            if final is not None:
                total = sum(
                    float(self._kl(h, ref).sum())
                    for h, ref in zip(final, self._reference, strict=True)
                )
            outcomes.append(
                KlOutcome(
                    kl=total / self.positions, positions=self.positions, sentences=self.sentences
                )
            )
        return outcomes

    @property
    def sentence_positions(self) -> torch.Tensor:
        """[sentences] int64: the scored positions of each sentence, in the
        order of the texts the guard was built on."""
        counts = torch.zeros(self.sentences, dtype=torch.long)
        for batch in self._batches:
            counts[list(batch.order)] = batch.scored.sum(dim=1).cpu()
        return counts

    def sentence_kls_many(self, settings: Sequence[Sequence[SteeringVector]]) -> list[torch.Tensor]:
        """For each setting, [sentences] float64: the KL summed over each
        sentence's scored positions, in the order of the texts. The mean over
        any subset of sentences is its sum over their `sentence_positions`:
        what a guard built on that subset measures (up to float rounding),
        so one pass sizes the neutral set."""
        out = []
        for _setting, final in zip(settings, self._states_many(settings), strict=True):
            totals = torch.zeros(self.sentences, dtype=torch.float64)
            if final is not None:
                for batch, h, ref in zip(self._batches, final, self._reference, strict=True):
                    per_position = self._kl(h, ref).double().cpu()
                    rows = torch.split(per_position, batch.scored.sum(dim=1).tolist())
                    totals[list(batch.order)] = torch.stack([r.sum() for r in rows])
            out.append(totals)
        return out

    def _states_many(
        self, settings: Sequence[Sequence[SteeringVector]]
    ) -> list[list[torch.Tensor] | None]:
        """Per setting, the final states at the scored positions of each batch
        (None for a setting that is the reference's own vectors: KL 0)."""
        if self._cache is None:
            states: list[list[torch.Tensor] | None] = []
            for vectors in settings:
                if self._is_reference(vectors):
                    states.append(None)
                    continue
                with preserved_rng(), self.steerer.applied(vectors):
                    states.append(self._final_states())
            return states
        deltas = checked_deltas(self.steerer, settings)
        cache = self._cache
        finals: list[list[torch.Tensor]] = [[] for _ in settings]

        def finish(setting: int, index: int, hidden: torch.Tensor) -> None:
            finals[setting].append(cache.base.norm(hidden)[self._batches[index].scored])

        with preserved_rng():
            run_many(cache, self.steerer, deltas, row_limit(cache), finish)
        return [
            None if self._is_reference(vectors) else final
            for vectors, final in zip(settings, finals, strict=True)
        ]

    def _kl(self, hidden: torch.Tensor, ref: KlReference) -> torch.Tensor:
        """KL per scored position of one batch."""
        return ref.kl(hidden, self._weight, self._bias)


class GuardedFitness:
    """A target fitness with the capability guard's metrics added: "kl" from a
    `KlGuard` for every setting and, with a `guard_task` fitness (another
    lm-eval task, e.g. general knowledge), its score ("guard", "guard_stderr")
    and the points it lost against the baseline ("guard_drop", > 0 is a
    loss). `base` are the vectors every setting keeps (the active vectors the
    run does not tune): the guard task's baseline is measured with them, once,
    here, as the KL guard's reference is.

    Once `calibrate` has the baseline's metrics, a setting gets no KL pass
    (its "kl" NaN, "kl_skipped" 1) when
    - its target is at or below the baseline's (and, with a guard task, its
      guard score is too): the baseline has KL 0 and is at least as good on
      every other count, so it can be neither recommended nor on the front;
    - a racing target (optimize/scoring/racing.py) stopped it after the first
      part of its documents: clearly below the finalists so far.
    A setting scored whole that could be a finalist (above the baseline, KL
    within `kl_budget` when one is given) is admitted to the race.

    Itself a `Fitness`: the run ranks what it reports with an objective.
    """

    def __init__(
        self,
        target: Fitness,
        guard: KlGuard,
        guard_task: Fitness | None = None,
        base: Sequence[SteeringVector] = (),
        kl_budget: float | None = None,
    ) -> None:
        self.target = target
        self.guard = guard
        self.guard_task = guard_task
        self.kl_budget = kl_budget
        self.config = target.config
        self.samples = target.samples
        self.higher_is_better = target.higher_is_better
        # which documents the target scores (optimize.guard.split), for the run's checks
        self.split = getattr(target, "split", None)
        self.side = getattr(target, "side", None)
        self.documents = getattr(target, "documents", "")
        self.guard_baseline = None if guard_task is None else guard_task.metrics(base).target
        self._floor: Metrics | None = None  # the baseline's metrics, once calibrated
        self.skipped = 0  # KL passes not run

    @property
    def metric_key(self) -> str:
        return self.target.metric_key

    @property
    def extra_seconds(self) -> float:
        """What a setting costs here beyond its target's scoring: its KL pass."""
        return float(self.guard.reference_seconds)

    def calibrate(self, baseline: Metrics, values: Sequence[float] = ()) -> None:
        """From now on, skip the KL pass of settings `baseline` dominates; a
        racing target also gets its per-document `values`."""
        self._floor = baseline
        racing = getattr(self.target, "calibrate", None)
        if racing is not None and values:
            racing(values)

    def _dominated(self, target: Metrics, guard: Metrics | None) -> bool:
        floor = self._floor
        if floor is None:
            return False
        if PARTIAL in target:
            return True  # stopped early: clearly below the finalists so far
        sign = 1.0 if self.higher_is_better else -1.0
        if not sign * target.target <= sign * floor.target:
            return False
        if guard is None or self.guard_task is None:
            return True
        guard_sign = 1.0 if self.guard_task.higher_is_better else -1.0
        return guard_sign * guard.target <= guard_sign * floor.get(GUARD, math.inf * guard_sign)

    def _admit(self, metrics: Metrics, values: Sequence[float]) -> None:
        admit = getattr(self.target, "admit", None)
        kl = metrics.get(KL, math.nan)
        if admit is None or math.isnan(kl) or not values:
            return
        if self.kl_budget is not None and kl > self.kl_budget:
            return
        admit(metrics.target, values)

    def _scores(self, vectors: Sequence[SteeringVector]) -> tuple[Metrics, tuple[float, ...]]:
        scores = getattr(self.target, "document_scores", None)
        if scores is None:
            return self.target.metrics(vectors), ()
        metrics, values = scores(vectors)
        return metrics, tuple(values)

    def document_scores(
        self, vectors: Sequence[SteeringVector]
    ) -> tuple[Metrics, tuple[float, ...]]:
        """The metrics and the target's per-document values."""
        target, values = self._scores(vectors)
        guard = None if self.guard_task is None else self.guard_task.metrics(vectors)
        kl = None if self._dominated(target, guard) else self.guard.evaluate(vectors).kl
        metrics = self._combine(target, kl, guard)
        self._admit(metrics, values)
        return metrics, values

    def metrics(self, vectors: Sequence[SteeringVector]) -> Metrics:
        return self.document_scores(vectors)[0]

    def metrics_many(self, settings: Sequence[Sequence[SteeringVector]]) -> list[Metrics]:
        """`metrics` of several settings, each part scored in batched passes
        where it can be (see `optimize.scoring.batched`)."""
        many = getattr(self.target, "document_scores_many", None)
        if many is not None:
            scored = list(many(settings))
        else:
            scored = [(m, ()) for m in _many(self.target, settings)]
        guards: list[Metrics | None] = (
            [None] * len(settings)
            if self.guard_task is None
            else list(_many(self.guard_task, settings))
        )
        measured = [i for i in range(len(settings)) if not self._dominated(scored[i][0], guards[i])]
        kls = dict(
            zip(measured, self.guard.evaluate_many([settings[i] for i in measured]), strict=True)
        )
        out = []
        for i, ((target, values), guard) in enumerate(zip(scored, guards, strict=True)):
            metrics = self._combine(target, None if i not in kls else kls[i].kl, guard)
            self._admit(metrics, values)
            out.append(metrics)
        return out

    def _combine(self, target: Metrics, kl: float | None, guard: Metrics | None) -> Metrics:
        values = dict(target)
        if kl is None:
            self.skipped += 1
            values[KL], values[KL_SKIPPED] = math.nan, 1.0
        else:
            values[KL] = kl
        if guard is not None and self.guard_task is not None and self.guard_baseline is not None:
            sign = 1.0 if self.guard_task.higher_is_better else -1.0
            values[GUARD] = guard.target
            values[GUARD_STDERR] = guard.target_stderr
            values[GUARD_DROP] = 100.0 * sign * (self.guard_baseline - guard.target)
        return Metrics(values)


def _many(fitness: Fitness, settings: Sequence[Sequence[SteeringVector]]) -> list[Metrics]:
    """A fitness's metrics of several settings, batched when it can."""
    many = getattr(fitness, "metrics_many", None)
    return list(many(settings)) if many is not None else [fitness.metrics(v) for v in settings]
