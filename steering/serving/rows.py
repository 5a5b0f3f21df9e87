"""Several requests, each with its own steering, in one batched generation.

Row i of the batch is steered by its own vectors only: the Steerer's
`applied_rows` adds one [B, 1, H] delta per steered layer, row i holding
sum(alpha * V) of row i's vectors (zeros where it has none there, which
adds exactly nothing), and its `finally` removes the hooks and puts the
app's active vectors back, however the generation ends. Prompts are padded
on the left with an attention mask, so each row's positions, and hence its
greedy tokens, are those it gets alone (checked by the tests, SmolLM2
included).

`model.generate` runs the batch; one stopping criterion keeps each row's
state (its tokens, its text as sent so far, its own token budget, stop
texts and cancellation) and marks a row finished on its own, so a short
reply does not wait for a long one and a cancelled row ends at its next
token. Only greedy rows share a batch: a sampled row runs alone, so its
seed gives the same text however many requests arrive with it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from steering.engine import Steerer
from steering.errors import InvalidInputError
from steering.limits import MAX_STOP_CHARS, MAX_STOP_SEQUENCES
from steering.vector import SteeringVector

STOP = "stop"  # end of text, or one of the request's stop texts
LENGTH = "length"  # the request's max_tokens
CANCELLED = "cancelled"  # the client went away

MAX_TEMPERATURE = 5.0


@dataclass(frozen=True)
class Sampling:
    """How a row picks its tokens: greedy when `temperature` is 0 (then
    `top_p` and `seed` play no part)."""

    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.temperature <= MAX_TEMPERATURE:
            raise InvalidInputError(
                f"Temperature must be between 0 and {MAX_TEMPERATURE:g}, got {self.temperature!r}."
            )
        if not 0.0 < self.top_p <= 1.0:
            raise InvalidInputError(f"top_p must be above 0 and at most 1, got {self.top_p!r}.")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


@dataclass(frozen=True)
class RowRequest:
    """One request's prompt tokens and how much to generate."""

    input_ids: tuple[int, ...]
    max_new_tokens: int
    sampling: Sampling = field(default_factory=Sampling)
    stop: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.input_ids:
            raise InvalidInputError("The prompt has no tokens.")
        if self.max_new_tokens < 1:
            raise InvalidInputError(f"max_tokens must be 1 or more, got {self.max_new_tokens}.")
        if len(self.stop) > MAX_STOP_SEQUENCES or any(
            not s or len(s) > MAX_STOP_CHARS for s in self.stop
        ):
            raise InvalidInputError(
                f"stop takes at most {MAX_STOP_SEQUENCES} non-empty texts of at most "
                f"{MAX_STOP_CHARS} characters."
            )


@dataclass(frozen=True)
class RowResult:
    """What one row produced: the whole text, why it ended, token counts."""

    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int


class RowOutput:
    """Where a row's text goes as it grows, and whether its client still wants
    it. The default discards the text and is never cancelled."""

    def on_text(self, delta: str) -> None:
        """A new piece of the reply (called from the generating thread)."""

    def cancelled(self) -> bool:
        return False


@dataclass(frozen=True)
class Row:
    """One row of a batch: the request, the vectors that steer it, its output."""

    request: RowRequest
    vectors: tuple[SteeringVector, ...]
    output: RowOutput = field(default_factory=RowOutput)


def can_share(rows: Sequence[Row]) -> bool:
    """Whether `rows` may run as one batch: one row, or greedy rows only."""
    return len(rows) == 1 or all(row.request.sampling.greedy for row in rows)


def generate_rows(steerer: Steerer, rows: Sequence[Row]) -> list[RowResult]:
    """Generate every row in one batched `model.generate`, row i steered by
    `rows[i].vectors` alone (not the app's active vectors). The caller holds
    the model lock. Returns one result per row, in order.

    Raises:
        InvalidInputError: no rows, or sampled rows asked to share a batch.
        IncompatibleVectorError: a vector that does not fit the model (before
            anything runs).
    """
    if not rows:
        raise InvalidInputError("generate_rows needs at least one row.")
    if not can_share(rows):
        raise InvalidInputError("Sampled requests run one at a time; batch only greedy ones.")
    model, tokenizer = steerer.model, steerer.tokenizer
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    width = max(len(row.request.input_ids) for row in rows)
    input_ids = torch.tensor(
        [[pad] * (width - len(r.request.input_ids)) + list(r.request.input_ids) for r in rows]
    )
    mask = torch.tensor(
        [[0] * (width - len(r.request.input_ids)) + [1] * len(r.request.input_ids) for r in rows]
    )
    tracker = _Tracker(tokenizer, rows, _end_ids(model, tokenizer))
    sampling = rows[0].request.sampling
    kwargs: dict[str, Any] = {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
    if not sampling.greedy:
        torch.manual_seed(sampling.seed)
        kwargs = {"do_sample": True, "temperature": sampling.temperature, "top_p": sampling.top_p,
                  "top_k": None}
    with torch.no_grad(), steerer.applied_rows([row.vectors for row in rows]):
        model.generate(
            input_ids=input_ids.to(steerer.device),
            attention_mask=mask.to(steerer.device),
            max_new_tokens=max(row.request.max_new_tokens for row in rows),
            stopping_criteria=StoppingCriteriaList([tracker]),
            pad_token_id=pad,
            **kwargs,
        )
    return tracker.results()


def _end_ids(model: Any, tokenizer: Any) -> set[int]:
    """The tokens that end a reply: the model's generation config's EOS
    (a chat model may have several, e.g. <|im_end|>) and the tokenizer's."""
    ends: set[int] = set()
    config = getattr(model, "generation_config", None)
    for value in (getattr(config, "eos_token_id", None), tokenizer.eos_token_id):
        if isinstance(value, int):
            ends.add(value)
        elif isinstance(value, (list, tuple)):
            ends.update(int(v) for v in value)
    return ends


class _RowState:
    """One row's progress: its tokens, the text sent so far, and how it ended."""

    def __init__(self, row: Row, decode: Callable[[list[int]], str]) -> None:
        self.row = row
        self.decode = decode
        self.tokens: list[int] = []
        self.sent = ""
        self.text = ""
        self.finish: str | None = None

    def add(self, token: int) -> None:
        self.tokens.append(token)
        self.text = self.decode(self.tokens)
        request = self.row.request
        for stop in request.stop:
            at = self.text.find(stop)
            if at >= 0:
                self.text = self.text[:at]
                self.end(STOP)
                return
        if len(self.tokens) >= request.max_new_tokens:
            self.end(LENGTH)
            return
        self._send(self._safe_end())

    def end(self, reason: str) -> None:
        self.finish = reason
        if reason != CANCELLED:
            self._send(len(self.text))

    def _safe_end(self) -> int:
        """How much of the text can be sent now: not a half-decoded character
        (U+FFFD at the end), nor a tail that may begin a stop text."""
        end = len(self.text)
        if self.text.endswith("\ufffd"):
            end -= 1
        held = 0
        for stop in self.row.request.stop:
            for size in range(min(len(stop) - 1, end), held, -1):
                if self.text[end - size : end] == stop[:size]:
                    held = size
                    break
        return end - held

    def _send(self, end: int) -> None:
        # Decoding more tokens may rewrite the text's tail (a merged
        # character); what was sent stays, the rest follows once it is stable.
        if end > len(self.sent) and self.text.startswith(self.sent):
            delta = self.text[len(self.sent) : end]
            self.sent += delta
            self.row.output.on_text(delta)

    def result(self) -> RowResult:
        return RowResult(
            text=self.text,
            finish_reason=self.finish or LENGTH,
            prompt_tokens=len(self.row.request.input_ids),
            completion_tokens=len(self.tokens),
        )


class _Tracker(StoppingCriteria):
    """Called by `generate` after every step with the batch's tokens so far:
    hands each unfinished row its new token and says which rows are done."""

    def __init__(self, tokenizer: Any, rows: Sequence[Row], end_ids: set[int]) -> None:
        def decode(tokens: list[int]) -> str:
            text = tokenizer.decode(
                tokens, skip_special_tokens=True, clean_up_tokenization_spaces=False
            )
            return str(text)

        self.states = [_RowState(row, decode) for row in rows]
        self.end_ids = end_ids

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
        newest = input_ids[:, -1].tolist()
        for state, token in zip(self.states, newest, strict=True):
            if state.finish is not None:
                continue
            if state.row.output.cancelled():
                state.end(CANCELLED)
            elif token in self.end_ids:
                state.end(STOP)
            else:
                state.add(int(token))
        done = [state.finish is not None for state in self.states]
        return cast(torch.BoolTensor, torch.tensor(done, dtype=torch.bool, device=input_ids.device))

    def results(self) -> list[RowResult]:
        return [state.result() for state in self.states]
