"""lm-eval's loglikelihood answers, with the layers below the steering run once.

Steering adds to the hidden state entering its layer, so for a given input
everything below the lowest steered layer L is the same for every particle.
`PrefixScorer` takes a task's loglikelihood requests once and tokenizes them
as lm-eval's HFLM does. It keeps one row per distinct model input (all
one-token choices of a context share a row), sorted longest first, cut into
right-padded batches where padding costs least (`steering.bucketing`).
Scoring a setting then runs, per batch:

1. the hidden state entering layer L, from its store when it is there; else
   computed from the nearest stored layer below L (or the embeddings) and
   stored if the store has room. Layers below L are unsteered by definition.
2. layers L..N-1 with the steering active (each layer's own forward, so the
   steering the Steerer installed applies), then the final norm.
3. the LM head and log-softmax only at the positions whose next token is
   scored, giving per request the sum of the continuation's log-probs and
   whether greedy decoding produces it: lm-eval's (loglikelihood, is_greedy).

Causal attention means a row's real positions never see the padding to their
right, so a row's numbers do not depend on what shares its batch.

`score_many` scores several settings in shared passes: per batch, the layers
below the lowest steered layer among them run once, and the state is
repeated once per setting, each block of rows carrying its own setting's
deltas through the layers above (`optimize.scoring.batched.run_many`).

The layer loop is written for the Llama, Mistral and Qwen2/3 layout
(`model.model.{embed_tokens, rotary_emb, layers, norm}`, `model.lm_head`);
`PrefixScorer.build` returns None for any other model or on any mismatch with
lm-eval's answers on one batch (the caller then scores through lm-eval).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from steering.batched import run_many
from steering.bucketing import batch_cost_tokens, group_rows
from steering.layer_cache import DEFAULT_CACHE_BYTES, LayerCache, layout_unsupported

log = logging.getLogger(__name__)

# The answers do not depend on the batch, so a batch may hold up to this many
# tokens (rows x width) even when the configured batch size is smaller (on 2
# CPU cores 100 contexts ran 5-30 % faster in batches of 16-64 than of 8);
# where to cut is `steering.bucketing.group_rows`' choice (the least padding).
MIN_BATCH_TOKENS = 1024
# Requests compared with lm-eval before the scorer is used (`_differs_from_lm_eval`).
CHECK_REQUESTS = 8


class _Unscorable(Exception):
    """A request this scorer does not handle (lm-eval will say what is wrong)."""


@dataclass(frozen=True)
class _Batch:
    """One right-padded batch of distinct model inputs.

    `pick_rows`/`pick_positions` index the positions whose logits are needed
    (each once); `targets[i]` is the continuation token scored at pick
    `picks[i]`, for request `owners[i]` (an index into the batch's requests).
    """

    ids: torch.Tensor  # [rows, width]
    pick_rows: torch.Tensor  # [picks]
    pick_positions: torch.Tensor  # [picks]
    picks: torch.Tensor  # [scored tokens] -> index into the picks
    targets: torch.Tensor  # [scored tokens]
    owners: torch.Tensor  # [scored tokens] -> index into `requests`
    requests: tuple[int, ...]  # indices into the scorer's request list


def _answered(answers: Sequence[tuple[float, bool] | None]) -> list[tuple[float, bool]]:
    """`answers` once every request has its answer (each batch answers its own)."""
    done = [answer for answer in answers if answer is not None]
    if len(done) != len(answers):
        raise RuntimeError(f"{len(answers) - len(done)} request(s) were left without an answer")
    return done


def _tokenize(lm: Any, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """(context tokens, continuation tokens) exactly as HFLM.loglikelihood makes them."""
    if context == "":
        continuation_enc = lm.tok_encode(continuation, add_special_tokens=False)
        if lm.prefix_token_id != continuation_enc[0]:
            return [lm.prefix_token_id], continuation_enc
        return continuation_enc[:1], continuation_enc[1:]
    pair: tuple[list[int], list[int]] = lm._encode_pair(context, continuation)
    return pair


def _supported(model: Any, layers: torch.nn.ModuleList, lm: Any) -> str | None:
    """Why the layer loop cannot answer lm-eval's requests on this model, or None."""
    why = layout_unsupported(model, layers)
    if why is not None:
        return why
    if getattr(lm, "backend", None) != "causal":
        return "lm-eval does not treat the model as causal"
    if getattr(lm, "mixed_precision_dtype", None) is not None:
        return "lm-eval runs the model under autocast"
    return None


class PrefixScorer(LayerCache):
    """Scores a fixed list of loglikelihood requests, reusing the hidden
    states below the lowest steered layer. Build it with `PrefixScorer.build`."""

    def __init__(
        self,
        model: Any,
        lm: Any,
        requests: Sequence[Any],
        batch_size: int,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ) -> None:
        device = model.model.embed_tokens.weight.device
        self.batches = self._plan(lm, requests, batch_size, device)
        super().__init__(model, [b.ids for b in self.batches], cache_bytes)
        self.softmax_dtype = getattr(lm, "softmax_dtype", None)
        self.requests = len(requests)

    @classmethod
    def build(
        cls,
        steerer: Any,
        lm: Any,
        requests: Sequence[Any],
        batch_size: int,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        check: bool = True,
    ) -> PrefixScorer | None:
        """A scorer for `requests`, or None (with the reason logged) when the
        model's layout is not supported or the scorer's answers on one batch
        differ from lm-eval's. `check` False skips that comparison: for
        another part of a task whose scorer passed it on the same model (the
        requests are built the same way; only the documents differ)."""
        model = steerer.model
        why = _supported(model, steerer.layers, lm)
        if why is not None:
            log.info("prefix cache off: %s; scoring through lm-eval", why)
            return None
        if not requests:
            return None
        try:
            scorer = cls(model, lm, requests, batch_size, cache_bytes)
        except _Unscorable as exc:
            log.info("prefix cache off: %s; scoring through lm-eval", exc)
            return None
        why = scorer._differs_from_lm_eval(lm, requests) if check else None
        if why is not None:
            log.warning("prefix cache off: %s; scoring through lm-eval", why)
            return None
        return scorer

    # ----------------------------------------------------------------- plan

    @staticmethod
    def _plan(
        lm: Any, requests: Sequence[Any], batch_size: int, device: torch.device
    ) -> list[_Batch]:
        # request -> (row, continuation tokens); lm-eval's input is
        # (context + continuation) left-truncated to max_length + 1, minus the
        # last token, and its scored logits are the last len(continuation).
        rows: dict[tuple[int, ...], list[tuple[int, list[int]]]] = {}
        for index, instance in enumerate(requests):
            context, continuation = _tokenize(lm, *instance.args)
            if not context or not continuation or len(continuation) > lm.max_length:
                raise _Unscorable(f"request {index} has an empty or over-long continuation")
            row = tuple((context + continuation)[-(lm.max_length + 1) :][:-1])
            rows.setdefault(row, []).append((index, continuation))
        ordered = sorted(rows, key=lambda r: (-len(r), r))
        cost = batch_cost_tokens(torch.device(device), MIN_BATCH_TOKENS)
        batches, start = [], 0
        for size in group_rows([len(r) for r in ordered], batch_size, MIN_BATCH_TOKENS, cost):
            width = len(ordered[start])  # the longest row of the batch
            chunk = ordered[start : start + size]
            start += size
            ids = torch.zeros((len(chunk), width), dtype=torch.long)
            pick_index: dict[tuple[int, int], int] = {}
            picks: list[int] = []
            targets: list[int] = []
            owners: list[int] = []
            members: list[int] = []
            for r, row in enumerate(chunk):
                ids[r, : len(row)] = torch.tensor(row, dtype=torch.long)
                for index, continuation in rows[row]:
                    owner = len(members)
                    members.append(index)
                    first = len(row) - len(continuation)
                    for offset, token in enumerate(continuation):
                        key = (r, first + offset)
                        picks.append(pick_index.setdefault(key, len(pick_index)))
                        targets.append(token)
                        owners.append(owner)
            where = sorted(pick_index, key=pick_index.__getitem__)
            batches.append(
                _Batch(
                    ids=ids.to(device),
                    pick_rows=torch.tensor([w[0] for w in where], device=device),
                    pick_positions=torch.tensor([w[1] for w in where], device=device),
                    picks=torch.tensor(picks, device=device),
                    targets=torch.tensor(targets, device=device),
                    owners=torch.tensor(owners, device=device),
                    requests=tuple(members),
                )
            )
        return batches

    # --------------------------------------------------------------- scoring

    def score(self, lowest_steered: int | None) -> list[tuple[float, bool]]:
        """(loglikelihood, is_greedy) per request, in request order, with the
        model as it is now: steered at `lowest_steered` and above, or not at
        all when None."""
        answers: list[tuple[float, bool] | None] = [None] * self.requests

        def finish(index: int, hidden: torch.Tensor) -> None:
            self._answer(self.batches[index], hidden, answers)

        self.run(lowest_steered, finish)
        return _answered(answers)

    def score_many(
        self,
        steerer: Any,
        deltas: Sequence[Mapping[int, torch.Tensor]],
        max_rows: Callable[[torch.Tensor], int],
    ) -> list[list[tuple[float, bool]]]:
        """`score` for several settings in shared passes (`batched.run_many`): per
        setting, (loglikelihood, is_greedy) per request."""
        results: list[list[tuple[float, bool] | None]] = [[None] * self.requests for _ in deltas]

        def finish(setting: int, index: int, hidden: torch.Tensor) -> None:
            self._answer(self.batches[index], hidden, results[setting])

        run_many(self, steerer, deltas, max_rows, finish)
        return [_answered(answers) for answers in results]

    def _answer(
        self, batch: _Batch, hidden: torch.Tensor, answers: list[tuple[float, bool] | None]
    ) -> None:
        picked = self.base.norm(hidden)[batch.pick_rows, batch.pick_positions]
        logits = self.model.lm_head(picked)
        logprobs = F.log_softmax(logits, dim=-1, dtype=self.softmax_dtype)
        scored = logprobs[batch.picks, batch.targets]
        greedy = logprobs.argmax(dim=-1)[batch.picks] == batch.targets
        count = len(batch.requests)
        sums = torch.zeros(count, dtype=scored.dtype, device=scored.device)
        sums.index_add_(0, batch.owners, scored)
        misses = torch.zeros(count, dtype=torch.long, device=scored.device)
        misses.index_add_(0, batch.owners, (~greedy).long())
        for owner, (value, miss) in enumerate(zip(sums.tolist(), misses.tolist(), strict=True)):
            answers[batch.requests[owner]] = (float(value), miss == 0)

    # ----------------------------------------------------------------- check

    def _differs_from_lm_eval(self, lm: Any, requests: Sequence[Any]) -> str | None:
        """Compare with lm-eval on the first CHECK_REQUESTS requests of the
        shortest batch, the loop split mid-model.

        A handful of requests is enough: the check is of the loop's wiring
        (layers, norm, head, picked positions), which a wrong answer shows on
        any request, while the shortest batch alone held 20 to 54 requests on the
        shipped tasks and cost more than scoring a setting. Both run the model
        as it is (with whatever steering is active), so the comparison needs
        no change of the active vectors."""
        indices = self.batches[-1].requests[:CHECK_REQUESTS]
        subset = [requests[i] for i in indices]
        device = self.base.embed_tokens.weight.device
        split = self.num_layers // 2
        answers: list[tuple[float, bool] | None] = [None] * len(subset)
        try:
            with torch.no_grad():
                expected = lm.loglikelihood(subset, disable_tqdm=True)
                for batch in self._plan(lm, subset, len(subset), device):
                    hidden = self._run_layers(self.base.embed_tokens(batch.ids), 0, split)
                    self._answer(batch, self._run_layers(hidden, split, self.num_layers), answers)
        except Exception as exc:  # noqa: BLE001 - any failure of the fast path: do not use it
            return f"the layer loop failed on this model ({type(exc).__name__}: {exc})"
        finally:
            self.layer_runs = 0
        tolerance = 1e-3 if self.base.embed_tokens.weight.dtype == torch.float32 else 5e-2
        for index, want, got in zip(indices, expected, answers, strict=True):
            close = got is not None and math.isclose(
                want[0], got[0], rel_tol=tolerance, abs_tol=tolerance
            )
            if not close:
                mine = "none" if got is None else f"{got[0]:.6f}"
                return (
                    f"its loglikelihood of request {index} is {mine}, lm-eval's is "
                    f"{want[0]:.6f}"
                )
        return None
