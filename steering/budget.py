"""How long model work will take, said before it starts.

A job (a capture, a task vector, an Explore map, applying a result at new
layers) is estimated from what it makes the model read: the tokens of the
prompts and answers it captures that the Steerer has not captured yet this
session, the rows and strengths of a map, the replies it writes. Tokens
become seconds at the speed this model was last measured at on this machine
(`Throughput`, recorded by every capture pass; a model never measured is
measured first by its layer norm calibration, which every capture needs
anyway). Tokenizing is also where the caps on prompt length are checked, so
an estimate refuses what the job would refuse, before any model work.

Estimates are rough (attention grows faster than linearly, generation speed
varies): good to tell minutes from hours, which is what a person deciding
whether to wait needs.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from steering.activations import padded_tokens
from steering.errors import InvalidInputError
from steering.limits import MAX_MAP_PROMPTS, count

if TYPE_CHECKING:
    from steering.engine import Steerer
    from steering.extract import VectorSource
    from steering.vector import SteeringVector


def duration(seconds: float) -> str:
    """"45 s", "12 min", "3.5 h": the scale a person reads an estimate in."""
    if seconds < 90:
        return f"{max(seconds, 1):.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class Throughput:
    """The measured speed of one model on this machine: seconds per token of
    a batched forward pass (captures, scoring) and seconds per generated token.

    Kept by the model's Steerer; each new measurement is averaged with the
    ones before (a running mean weighted by tokens), so one slow batch does
    not swing the estimate."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens = 0
        self._seconds = 0.0
        self._step: float | None = None

    def record_forward(self, tokens: int, seconds: float) -> None:
        if tokens > 0 and seconds >= 0:
            with self._lock:
                self._tokens += tokens
                self._seconds += seconds

    def record_step(self, seconds: float) -> None:
        """The seconds of one generation step (one new token)."""
        with self._lock:
            self._step = seconds if self._step is None else (self._step + seconds) / 2

    @property
    def token_seconds(self) -> float | None:
        """Seconds per token of a forward pass (padding included: what the
        model runs); None before any was timed."""
        with self._lock:
            return self._seconds / self._tokens if self._tokens else None

    @property
    def step_seconds(self) -> float | None:
        """Seconds per generated token; None before it was timed."""
        with self._lock:
            return self._step


@dataclass(frozen=True)
class WorkEstimate:
    """What a job makes the model do, and about how long that takes."""

    seconds: float
    what: str

    def describe(self) -> str:
        """"reads 4,000 prompts (1,204,000 tokens): about 70 min"."""
        return f"{self.what}: about {duration(self.seconds)}"

    def __add__(self, other: WorkEstimate) -> WorkEstimate:
        what = "; ".join(part for part in (self.what, other.what) if part)
        return WorkEstimate(self.seconds + other.seconds, what)


NOTHING = WorkEstimate(0.0, "")


def calibrate(steerer: Steerer) -> Throughput:
    """The Steerer's throughput, measured first when it never was: the layer
    norm calibration pass (which every capture needs) times the forward
    pass, and one short forward times a generation step. Call it holding the
    model lock (it runs the model, under the Steerer's job control)."""
    speed = steerer.throughput
    steerer.layer_norms()  # its first run is timed into `speed`
    if speed.step_seconds is None:
        speed.record_step(_time_one_step(steerer))
    return speed


def _time_one_step(steerer: Steerer) -> float:
    """Seconds of one forward of a two-token input: about one generation step."""
    model = steerer.model
    bos = steerer.tokenizer.bos_token_id
    ids = torch.tensor([[bos if bos is not None else 0, 1]], device=steerer.device)
    with torch.no_grad(), steerer.unsteered():
        model(input_ids=ids, use_cache=False)  # warm-up
        began = time.perf_counter()
        model(input_ids=ids, use_cache=False)
    return time.perf_counter() - began


@dataclass(frozen=True)
class Reads:
    """The prompt lists and answer pairs an extraction reads."""

    prompt_lists: tuple[tuple[str, ...], ...] = ()
    pair_lists: tuple[tuple[tuple[str, str], ...], ...] = ()


class _Recorder:
    """Stands in for the Steerer's activations: remembers what a method asks
    for and answers with zeros that take no memory."""

    def __init__(self, num_layers: int, hidden: int) -> None:
        self.shape = (num_layers, hidden)
        self.prompt_lists: list[tuple[str, ...]] = []
        self.pair_lists: list[tuple[tuple[str, str], ...]] = []

    def prompt_activations(self, prompts: Sequence[str]) -> torch.Tensor:
        self.prompt_lists.append(tuple(prompts))
        return torch.zeros(()).expand(len(prompts), *self.shape)

    def answer_activations(self, pairs: Sequence[tuple[str, str]]) -> torch.Tensor:
        self.pair_lists.append(tuple((str(c), str(a)) for c, a in pairs))
        return torch.zeros(()).expand(len(pairs), *self.shape)


def reads_of(source: VectorSource, num_layers: int, hidden: int) -> Reads:
    """What `source`'s method reads to make a direction (at any layer: one
    capture serves every layer). Found by running the method on zeros, so a
    new method needs nothing here; a method that reads nothing (a GGUF
    direction) or refuses zeros still has its reads recorded."""
    recorder = _Recorder(num_layers, hidden)
    # PCA of zeros, or a direction that cannot move, refuses: what it read is recorded
    with contextlib.suppress(InvalidInputError):
        source.direction(recorder, 0)
    return Reads(tuple(recorder.prompt_lists), tuple(recorder.pair_lists))


def _tokens_to_read(steerer: Steerer, reads: Reads) -> tuple[int, int, int, int]:
    """(prompts, answers, tokens, tokens with padding) of `reads` not captured
    yet. Tokenizing checks the caps on prompt length: a refusal comes here,
    before any work."""
    prompts = answers = tokens = padded = 0
    width = steerer.info.max_context
    for prompts_list in dict.fromkeys(reads.prompt_lists):
        if not steerer.has_captured(prompts_list):
            lengths = [len(t) for t in steerer.prompt_tokens(prompts_list)]
            prompts, tokens = prompts + len(lengths), tokens + sum(lengths)
            padded += padded_tokens(lengths, width)
    for pairs in dict.fromkeys(reads.pair_lists):
        if not steerer.has_captured_answers(pairs):
            lengths = [len(t) for t in steerer.answer_tokens(pairs)[0]]
            answers, tokens = answers + len(lengths), tokens + sum(lengths)
            padded += padded_tokens(lengths, width)
    return prompts, answers, tokens, padded


def _reading(prompts: int, answers: int, tokens: int) -> str:
    parts = [f"{count(prompts)} prompt{'s' * (prompts != 1)}"] if prompts else []
    parts += [f"{count(answers)} answer{'s' * (answers != 1)}"] if answers else []
    return f"reads {' and '.join(parts)} ({count(tokens)} tokens)" if parts else ""


def _seconds(speed: Throughput, tokens: float) -> float:
    rate = speed.token_seconds
    if rate is None:
        raise RuntimeError("calibrate(steerer) before estimating")
    return tokens * rate


def estimate_reads(
    steerer: Steerer,
    sources: Iterable[VectorSource],
    prompt_lists: Iterable[Sequence[str]] = (),
) -> WorkEstimate:
    """Capturing what `sources` read, and the `prompt_lists`, that has not
    been captured yet (plus, on a model never measured, its calibration)."""
    info = steerer.info
    merged = [reads_of(s, info.num_layers, info.hidden_size) for s in sources]
    reads = Reads(
        tuple(p for r in merged for p in r.prompt_lists) + tuple(tuple(p) for p in prompt_lists),
        tuple(p for r in merged for p in r.pair_lists),
    )
    prompts, answers, tokens, padded = _tokens_to_read(steerer, reads)
    if not tokens:
        return NOTHING
    return WorkEstimate(_seconds(calibrate(steerer), padded), _reading(prompts, answers, tokens))


def estimate_moves(
    steerer: Steerer, moves: Iterable[tuple[SteeringVector, int]]
) -> WorkEstimate:
    """Rebuilding each vector at its new layer (a vector staying at its own
    layer costs nothing)."""
    return estimate_reads(steerer, [v.source for v, layer in moves if layer != v.layer])


def map_texts(vector: SteeringVector) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The concept and contrast prompts the layer x strength map scores: the
    first MAX_MAP_PROMPTS of each list."""
    return vector.prompts[:MAX_MAP_PROMPTS], vector.contrast_prompts[:MAX_MAP_PROMPTS]


def estimate_map(
    steerer: Steerer,
    vector: SteeringVector,
    layers: Sequence[int],
    strengths: Sequence[float],
    neutral: Sequence[str],
) -> WorkEstimate:
    """The map: one pass over its texts through every layer, then per row
    every strength over the texts from the row's layer up (the lm head
    counted as one more layer), plus rebuilding the vector at each layer."""
    concept, contrast = map_texts(vector)
    texts = [*concept, *contrast, *neutral]
    lengths = [len(t) for t in steerer.prompt_tokens(texts)]
    padded = len(texts) * max(lengths, default=0)
    total = steerer.info.num_layers
    layer_share = sum(len(strengths) * (total - layer + 1) / (total + 1) for layer in layers)
    tokens = padded * (1 + layer_share)
    rows = len(layers) * len(strengths)
    own = WorkEstimate(
        _seconds(calibrate(steerer), tokens),
        f"scores {count(rows)} cells on {count(len(texts))} texts",
    )
    return estimate_moves(steerer, [(vector, layer) for layer in layers]) + own


def estimate_replies(
    steerer: Steerer, replies: int, max_new_tokens: int, moves: Iterable[tuple[SteeringVector, int]]
) -> WorkEstimate:
    """Writing `replies` replies of up to `max_new_tokens` tokens each, after
    rebuilding the vectors that move."""
    speed = calibrate(steerer)
    step = speed.step_seconds or 0.0
    own = WorkEstimate(
        replies * max_new_tokens * step,
        f"writes {replies} repl{'ies' if replies != 1 else 'y'} of up to {max_new_tokens} tokens",
    )
    return estimate_moves(steerer, moves) + own


def check_reads(steerer: Steerer, vectors: Iterable[SteeringVector]) -> None:
    """Refuse vectors whose inputs this model could not read within the caps
    (a prompt or an answer too long once tokenized): what a loaded file
    holds is checked when it is loaded, not when a job first reads it.
    InvalidInputError naming the text."""
    info = steerer.info
    for vector in vectors:
        reads = reads_of(vector.source, info.num_layers, info.hidden_size)
        for prompts in reads.prompt_lists:
            steerer.prompt_tokens(prompts)
        for pairs in reads.pair_lists:
            steerer.answer_tokens(pairs)


__all__ = [
    "NOTHING",
    "Reads",
    "Throughput",
    "WorkEstimate",
    "calibrate",
    "check_reads",
    "duration",
    "estimate_map",
    "estimate_moves",
    "estimate_reads",
    "estimate_replies",
    "map_texts",
    "reads_of",
]
