"""Text generation with the (possibly steered) model."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

from steering.errors import InvalidInputError

MAX_NEW_TOKENS_LIMIT = 2048


@dataclass(frozen=True)
class GenerationSettings:
    """Sampling settings; temperature 0 means greedy decoding."""

    max_new_tokens: int = 128
    temperature: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not 1 <= int(self.max_new_tokens) <= MAX_NEW_TOKENS_LIMIT:
            raise InvalidInputError(
                f"Max new tokens must be between 1 and {MAX_NEW_TOKENS_LIMIT}, "
                f"got {self.max_new_tokens!r}."
            )
        if not 0.0 <= float(self.temperature) <= 5.0:
            raise InvalidInputError(
                f"Temperature must be between 0 and 5, got {self.temperature!r}."
            )

    def generate_kwargs(self, tokenizer: Any) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "max_new_tokens": int(self.max_new_tokens),
            "pad_token_id": tokenizer.pad_token_id or tokenizer.eos_token_id,
        }
        if self.temperature > 0:
            kwargs.update(do_sample=True, temperature=float(self.temperature), top_p=1.0)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        return kwargs


def check_context(
    model: Any, tokens: int, new_tokens: int, what: str, fix: str = "Shorten it"
) -> None:
    """Refuse a generation whose input plus new tokens exceeds the model's
    context: past it a model with learned positions fails and others go on
    producing garbage."""
    config = getattr(model, "config", None)
    max_context = getattr(config, "max_position_embeddings", None) or getattr(
        config, "n_positions", None
    )
    if max_context and tokens + new_tokens > max_context:
        raise InvalidInputError(
            f"{what} is {tokens} tokens; with {new_tokens} new tokens it exceeds the "
            f"model's context of {max_context}. {fix} or ask for fewer tokens."
        )


def chat_input_ids(tokenizer: Any, messages: Sequence[dict[str, str]]) -> torch.Tensor:
    """Token ids of a conversation, ending where the assistant should speak."""
    ids: torch.Tensor
    if getattr(tokenizer, "chat_template", None):
        ids = tokenizer.apply_chat_template(
            list(messages), add_generation_prompt=True, return_tensors="pt", return_dict=True
        )["input_ids"]
    else:
        text = "\n".join(f"{m['role']}: {m['content']}" for m in messages) + "\nassistant:"
        ids = tokenizer(text, return_tensors="pt")["input_ids"]
    return ids


@dataclass
class ReplyEnd:
    """How a streamed reply ended, filled in by `stream_reply`: the tokens it
    generated, and `cut` when it stopped at the token limit without ending
    (the page says so: a reply cut mid-sentence looked finished)."""

    tokens: int = 0
    cut: bool = False


class _Count(StoppingCriteria):
    """Records how many tokens a generation made and whether its last one ends
    the reply; never stops it."""

    def __init__(self, end: ReplyEnd, prompt: int, stops: set[int]) -> None:
        self.end, self.prompt, self.stops = end, prompt, stops
        self.ended = False

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> bool:
        self.end.tokens = int(input_ids.shape[1]) - self.prompt
        self.ended = int(input_ids[0, -1]) in self.stops
        return False


class _StopWhenSet(StoppingCriteria):
    """Ends a generation at the next token once `event` is set (a job's Cancel)."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> bool:
        return self.event.is_set()


def stream_reply(
    model: Any,
    tokenizer: Any,
    messages: Sequence[dict[str, str]],
    settings: GenerationSettings,
    cancel: threading.Event | None = None,
    end: ReplyEnd | None = None,
) -> Iterator[str]:
    """Yield the reply as it grows (each item is the whole reply so far).

    The caller holds the model lock for as long as it iterates. A set
    `cancel` ends the reply at the next token (what was written is kept).
    `end`, when given, says afterwards how the reply ended.
    """
    if not messages or not str(messages[-1].get("content", "")).strip():
        raise InvalidInputError("Type a message first.")
    input_ids = chat_input_ids(tokenizer, messages).to(model.device)
    check_context(
        model, input_ids.shape[1], settings.max_new_tokens, "The conversation", "Clear the chat"
    )
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    count = _Count(end or ReplyEnd(), int(input_ids.shape[1]), _stop_ids(model, tokenizer))
    stop = StoppingCriteriaList([count, *([_StopWhenSet(cancel)] if cancel is not None else [])])
    errors: list[BaseException] = []

    def run() -> None:
        try:
            torch.manual_seed(settings.seed)
            with torch.no_grad():
                model.generate(
                    input_ids=input_ids,
                    attention_mask=torch.ones_like(input_ids),
                    streamer=streamer,
                    stopping_criteria=stop,
                    **settings.generate_kwargs(tokenizer),
                )
        except BaseException as exc:  # noqa: BLE001 - raised again in the caller's thread below
            errors.append(exc)
            streamer.end()

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    reply = ""
    try:
        for piece in streamer:
            reply += piece
            yield reply
    finally:
        worker.join()
    if errors:
        raise errors[0]
    if end is not None:
        stopped = cancel is not None and cancel.is_set()
        end.cut = end.tokens >= settings.max_new_tokens and not count.ended and not stopped


def reply(
    model: Any,
    tokenizer: Any,
    messages: Sequence[dict[str, str]],
    settings: GenerationSettings,
) -> str:
    """The whole reply at once."""
    text = ""
    for so_far in stream_reply(model, tokenizer, messages, settings):
        text = so_far
    return text


def batch_reply_ids(
    model: Any,
    tokenizer: Any,
    conversations: Sequence[Sequence[dict[str, str]]],
    settings: GenerationSettings,
) -> tuple[tuple[int, ...], ...]:
    """The new token ids of the replies to several conversations, from one
    batched `generate` call (the end-of-sequence token and the padding after
    it left out).

    The conversations are left-padded (a decoder continues from the right end
    of its rows), so each row's reply is what `reply` gives for it alone, up
    to float rounding in the padded attention. Cheaper than one call per
    conversation because every step runs the model once for all rows.
    """
    if not conversations:
        raise InvalidInputError("There are no conversations to reply to.")
    rows = []
    for messages in conversations:
        if not messages or not str(messages[-1].get("content", "")).strip():
            raise InvalidInputError("Every conversation needs a last message with text.")
        ids = chat_input_ids(tokenizer, messages)[0]
        check_context(model, len(ids), settings.max_new_tokens, "A conversation")
        rows.append(ids)
    width = max(len(ids) for ids in rows)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    input_ids = torch.full((len(rows), width), int(pad), dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for index, ids in enumerate(rows):
        input_ids[index, width - len(ids) :] = ids
        mask[index, width - len(ids) :] = 1
    torch.manual_seed(settings.seed)
    with torch.no_grad():
        out = model.generate(
            input_ids=input_ids.to(model.device),
            attention_mask=mask.to(model.device),
            **settings.generate_kwargs(tokenizer),
        )
    ends = _stop_ids(model, tokenizer)
    replies = []
    for row in out[:, width:].tolist():
        stop = next((i for i, token in enumerate(row) if token in ends), len(row))
        replies.append(tuple(row[:stop]))
    return tuple(replies)


def batch_replies(
    model: Any,
    tokenizer: Any,
    conversations: Sequence[Sequence[dict[str, str]]],
    settings: GenerationSettings,
) -> tuple[str, ...]:
    """The replies to several conversations, in one batched pass (see
    `batch_reply_ids`)."""
    return tuple(
        tokenizer.decode(list(ids), skip_special_tokens=True)
        for ids in batch_reply_ids(model, tokenizer, conversations, settings)
    )


def _stop_ids(model: Any, tokenizer: Any) -> set[int]:
    """The token ids that end a reply: the generation config's end-of-sequence
    ids (one or several) and the tokenizer's."""
    ends: set[int] = set()
    config = getattr(model, "generation_config", None)
    for source in (getattr(config, "eos_token_id", None), tokenizer.eos_token_id):
        if isinstance(source, int):
            ends.add(source)
        elif source is not None:
            ends.update(int(token) for token in source)
    return ends


def complete(model: Any, tokenizer: Any, prompt: str, settings: GenerationSettings) -> str:
    """Continue a raw prompt (no chat template); returns only the new text."""
    if not prompt.strip():
        raise InvalidInputError("The prompt is empty.")
    enc = tokenizer(prompt, return_tensors="pt").to(model.device)
    check_context(model, enc["input_ids"].shape[1], settings.max_new_tokens, "The prompt")
    torch.manual_seed(settings.seed)
    with torch.no_grad():
        out = model.generate(**enc, **settings.generate_kwargs(tokenizer))
    text: str = tokenizer.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    return text
