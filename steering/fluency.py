"""Is a steering setting still fluent in generation? A repetition check.

The KL guard (`optimize.guard.kl`) compares next-token distributions on
neutral sentences the model is fed (teacher forcing). It does not see what
greedy generation does with those distributions: a setting inside the KL
budget can still fall into a loop in chat ("I'm so happy to have you as a
guest and I'm so happy..."), because one nudged token choice feeds the next.
This check looks at generation itself: greedy replies to twelve neutral chat
prompts (`tasks/neutral/prompts.txt`) with exactly the given vectors, and
the share of each reply's word 4-grams that repeat an earlier one.

The rule: a setting **loops** when the mean repeated share of its replies
is at least `LOOP_FLOOR` and at least `LOOP_MARGIN` above the unsteered
model's mean on the same prompts. It compares means over all the prompts,
not single replies, because a small model falls into loops on some prompts
by itself (SmolLM2-135M does on two of the twelve) and any change of
setting, however small, moves which ones: settings with a KL under 0.1
moved the mean by -0.11 to +0.04 at 128 tokens, while looping settings
move it by 0.1 to 0.65 (docs/guard.md has the measurement).

The unsteered replies are computed once (`fluency_reference`, or together
with the first settings checked: `fluency_reference_and_checks`) and passed
back in, so checking a setting costs one batched generation; several
settings share one (`check_fluency_many`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from steering.batched import checked_deltas, row_blocks
from steering.engine import Steerer
from steering.errors import InvalidInputError
from steering.generate import GenerationSettings, batch_replies, batch_reply_ids
from steering.vector import SteeringVector

FLUENCY_PROMPTS_PATH = Path(__file__).resolve().parent.parent / "tasks" / "neutral" / "prompts.txt"

# New tokens per reply. Loops rarely show in the first 64 tokens; at 128 the
# check caught 13 of the 18 settings within the KL budget that loop by 160
# tokens (96 tokens: 11), with no false alarm. Twelve replies of 128 tokens
# cost 15 s of one CPU thread on SmolLM2-135M (96 tokens: 11.5 s; docs/guard.md).
DEFAULT_FLUENCY_TOKENS = 128

# The words of one repeated sequence.
NGRAM = 4

# A setting loops when its replies' mean repeated share is at least this...
LOOP_FLOOR = 0.15
# ...and this much above the unsteered mean: over twice the largest rise of
# the settings with a KL under 0.1 (+0.04 at 96 tokens, +0.07 at 160).
LOOP_MARGIN = 0.10

# Settings generated in one batch by `check_fluency_many` (times the prompts:
# rows of one `generate` call).
SETTINGS_PER_BATCH = 8


def repeated_4grams(text: str) -> float:
    """The share of the text's word 4-grams (lower-cased, split on white
    space) that already occurred earlier in it: 0 for text that never repeats
    itself, near 1 for a reply stuck in a loop; 0 for fewer than four words."""
    words = text.lower().split()
    grams = [tuple(words[i : i + NGRAM]) for i in range(len(words) - NGRAM + 1)]
    if not grams:
        return 0.0
    seen: set[tuple[str, ...]] = set()
    repeats = 0
    for gram in grams:
        repeats += gram in seen
        seen.add(gram)
    return repeats / len(grams)


def fluency_prompts(path: str | Path = FLUENCY_PROMPTS_PATH) -> tuple[str, ...]:
    """The shipped neutral chat prompts (or those of another one-per-line file)."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise InvalidInputError(f"Cannot read the fluency prompts file {path}: {exc}") from exc
    prompts = tuple(line.strip() for line in lines if line.strip())
    if not prompts:
        raise InvalidInputError(f"The fluency prompts file {path} has no prompts.")
    return prompts


def _share(name: str, value: float) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 1:
        raise InvalidInputError(f"{name} must be a share between 0 and 1, got {value!r}.")
    return float(value)


def _prompts(prompts: Sequence[str]) -> tuple[str, ...]:
    prompts = tuple(prompts)
    if not prompts:
        raise InvalidInputError("The fluency check needs at least one prompt.")
    for prompt in prompts:
        if not isinstance(prompt, str) or not prompt.strip():
            raise InvalidInputError(f"A fluency prompt must be non-empty text, got {prompt!r}.")
    return prompts


def _tokens(max_new_tokens: int) -> int:
    # GenerationSettings holds the bounds and their message
    return GenerationSettings(max_new_tokens=max_new_tokens).max_new_tokens


@dataclass(frozen=True)
class FluencyReference:
    """The unsteered model's greedy replies to `prompts` (`max_new_tokens`
    each) and their repeated 4-gram shares: what a setting is compared with.
    `model` names the model they came from."""

    model: str
    prompts: tuple[str, ...]
    max_new_tokens: int
    texts: tuple[str, ...]
    shares: tuple[float, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "prompts", _prompts(self.prompts))
        object.__setattr__(self, "max_new_tokens", _tokens(self.max_new_tokens))
        texts, shares = tuple(self.texts), tuple(self.shares)
        if not len(texts) == len(shares) == len(self.prompts):
            raise InvalidInputError(
                f"A fluency reference needs one reply and one share per prompt: "
                f"{len(self.prompts)} prompts, {len(texts)} replies, {len(shares)} shares."
            )
        object.__setattr__(self, "texts", texts)
        object.__setattr__(
            self, "shares", tuple(_share("An unsteered share", s) for s in shares)
        )

    @property
    def share(self) -> float:
        """The mean repeated share over the replies."""
        return sum(self.shares) / len(self.shares)


@dataclass(frozen=True)
class ReplyFluency:
    """One steered reply: its text, its repeated 4-gram share, and the
    unsteered reply's share to the same prompt."""

    prompt: str
    text: str
    share: float
    reference_share: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "share", _share("A reply's repeated share", self.share))
        object.__setattr__(
            self, "reference_share", _share("An unsteered share", self.reference_share)
        )


def setting_loops(share: float, reference_share: float) -> bool:
    """The module's rule: the mean repeated share of a setting's replies is
    at least LOOP_FLOOR and at least LOOP_MARGIN above the unsteered mean."""
    return share >= LOOP_FLOOR and share - reference_share >= LOOP_MARGIN


@dataclass(frozen=True)
class FluencyCheck:
    """The check of one setting: each reply, the mean repeated shares steered
    (`share`) and unsteered (`reference_share`), whether it loops (the
    module's rule on those two), and a one-sentence `reason` written to be
    shown to users verbatim."""

    replies: tuple[ReplyFluency, ...]
    share: float
    reference_share: float
    loops: bool
    reason: str

    def __post_init__(self) -> None:
        if not self.replies:
            raise InvalidInputError("A fluency check needs at least one reply.")
        object.__setattr__(self, "replies", tuple(self.replies))
        object.__setattr__(self, "share", _share("The mean repeated share", self.share))
        object.__setattr__(
            self, "reference_share", _share("The mean unsteered share", self.reference_share)
        )
        if self.loops != setting_loops(self.share, self.reference_share):
            raise InvalidInputError(
                f"A setting with a mean repeated share of {self.share:.3f} against "
                f"{self.reference_share:.3f} unsteered "
                f"{'loops' if not self.loops else 'does not loop'} by the rule, "
                f"not loops={self.loops!r}."
            )


def judge(texts: Sequence[str], reference: FluencyReference) -> FluencyCheck:
    """The check of a setting from its replies to the reference's prompts."""
    texts = tuple(texts)
    if len(texts) != len(reference.prompts):
        raise InvalidInputError(
            f"Judging fluency needs one reply per prompt: {len(reference.prompts)} prompts, "
            f"{len(texts)} replies."
        )
    replies = tuple(
        ReplyFluency(prompt, text, repeated_4grams(text), unsteered)
        for prompt, text, unsteered in zip(reference.prompts, texts, reference.shares, strict=True)
    )
    share = sum(r.share for r in replies) / len(replies)
    loops = setting_loops(share, reference.share)
    verdict = "repeat themselves" if loops else "do not loop"
    reason = (
        f"Steered replies {verdict}: {share:.0%} of their 4-word sequences repeat, "
        f"against {reference.share:.0%} unsteered."
    )
    return FluencyCheck(replies, share, reference.share, loops, reason)


def _conversations(prompts: Sequence[str]) -> list[list[dict[str, str]]]:
    return [[{"role": "user", "content": prompt}] for prompt in prompts]


def fluency_reference(
    steerer: Steerer,
    *,
    prompts: Sequence[str] | None = None,
    max_new_tokens: int = DEFAULT_FLUENCY_TOKENS,
) -> FluencyReference:
    """The unsteered model's replies to `prompts` (default: the shipped ones),
    for `check_fluency`. The active vectors are back afterwards."""
    prompts = fluency_prompts() if prompts is None else _prompts(prompts)
    settings = GenerationSettings(max_new_tokens=max_new_tokens)
    with steerer.unsteered():
        texts = batch_replies(steerer.model, steerer.tokenizer, _conversations(prompts), settings)
    return FluencyReference(
        model=steerer.info.name,
        prompts=prompts,
        max_new_tokens=settings.max_new_tokens,
        texts=texts,
        shares=tuple(repeated_4grams(text) for text in texts),
    )


def fluency_reference_and_checks(
    steerer: Steerer,
    settings: Sequence[Sequence[SteeringVector]],
    *,
    prompts: Sequence[str] | None = None,
    max_new_tokens: int = DEFAULT_FLUENCY_TOKENS,
) -> tuple[FluencyReference, list[FluencyCheck]]:
    """The unsteered replies to `prompts` (`fluency_reference`) and
    the checks of `settings`, generated in one batch: the unsteered rows are
    one more block with no delta, which adds exactly nothing. On a CPU one
    generation of 24 rows costs about 80 % of two of 12 (SmolLM2-135M, 32
    tokens: 20.0 s against 2 x 12.4 s of one thread). The previously active
    vectors are back afterwards."""
    prompts = fluency_prompts() if prompts is None else _prompts(prompts)
    tokens = _tokens(max_new_tokens)
    ids = steered_reply_ids(steerer, [(), *settings], prompts, tokens)
    decode = steerer.tokenizer.decode
    texts = [
        tuple(decode(list(reply), skip_special_tokens=True) for reply in replies)
        for replies in ids
    ]
    reference = FluencyReference(
        model=steerer.info.name,
        prompts=prompts,
        max_new_tokens=tokens,
        texts=texts[0],
        shares=tuple(repeated_4grams(text) for text in texts[0]),
    )
    return reference, [judge(replies, reference) for replies in texts[1:]]


def _reference_for(
    steerer: Steerer,
    prompts: Sequence[str] | None,
    max_new_tokens: int | None,
    reference: FluencyReference | None,
) -> FluencyReference:
    """The given reference, once it is checked to fit the request, or a new one."""
    if reference is None:
        return fluency_reference(
            steerer,
            prompts=prompts,
            max_new_tokens=DEFAULT_FLUENCY_TOKENS if max_new_tokens is None else max_new_tokens,
        )
    if reference.model != steerer.info.name:
        raise InvalidInputError(
            f"The unsteered replies are of {reference.model}, not of {steerer.info.name}: "
            "compute them again for this model."
        )
    if prompts is not None and _prompts(prompts) != reference.prompts:
        raise InvalidInputError(
            "The prompts differ from those of the unsteered replies: pass the same prompts "
            "or no prompts."
        )
    if max_new_tokens is not None and max_new_tokens != reference.max_new_tokens:
        raise InvalidInputError(
            f"The unsteered replies have {reference.max_new_tokens} new tokens, not "
            f"{max_new_tokens!r}: pass the same limit or none."
        )
    return reference


def check_fluency(
    steerer: Steerer,
    vectors: Sequence[SteeringVector],
    *,
    prompts: Sequence[str] | None = None,
    max_new_tokens: int | None = None,
    reference: FluencyReference | None = None,
) -> FluencyCheck:
    """Greedy replies to the neutral prompts steered by exactly `vectors`,
    judged against the unsteered replies (`reference`, computed here when not
    given: pass it back to check further settings at the cost of one batched
    generation each). The previously active vectors are back afterwards,
    however generation ends.

    Raises:
        InvalidInputError: a reference of another model, prompts or token limit.
        IncompatibleVectorError: a vector does not fit the model.
    """
    reference = _reference_for(steerer, prompts, max_new_tokens, reference)
    settings = GenerationSettings(max_new_tokens=reference.max_new_tokens)
    with steerer.applied(vectors):
        texts = batch_replies(
            steerer.model, steerer.tokenizer, _conversations(reference.prompts), settings
        )
    return judge(texts, reference)


def check_fluency_many(
    steerer: Steerer,
    settings: Sequence[Sequence[SteeringVector]],
    *,
    reference: FluencyReference,
) -> list[FluencyCheck]:
    """`check_fluency` of several settings, generated together (see
    `steered_reply_ids`). The previously active vectors are back afterwards."""
    ids = steered_reply_ids(steerer, settings, reference.prompts, reference.max_new_tokens)
    decode = steerer.tokenizer.decode
    return [
        judge([decode(list(reply), skip_special_tokens=True) for reply in replies], reference)
        for replies in ids
    ]


def steered_reply_ids(
    steerer: Steerer,
    settings: Sequence[Sequence[SteeringVector]],
    prompts: Sequence[str],
    max_new_tokens: int,
) -> list[tuple[tuple[int, ...], ...]]:
    """For each setting, the new token ids of its greedy replies to `prompts`:
    `SETTINGS_PER_BATCH` settings per batched generation, each block of rows
    carrying its own setting's deltas. Greedy decoding is prefix-stable, so
    the first k ids are the reply a limit of k tokens gives (a measurement
    compares limits from one generation this way). The previously active
    vectors are back afterwards."""
    prompts = _prompts(prompts)
    deltas = checked_deltas(steerer, settings)
    generation = GenerationSettings(max_new_tokens=max_new_tokens)
    hidden = steerer.info.hidden_size
    out: list[tuple[tuple[int, ...], ...]] = []
    for start in range(0, len(deltas), SETTINGS_PER_BATCH):
        block = deltas[start : start + SETTINGS_PER_BATCH]
        with steerer.applied_deltas(row_blocks(block, len(prompts), hidden)):
            ids = batch_reply_ids(
                steerer.model, steerer.tokenizer, _conversations(prompts) * len(block), generation
            )
        out += [ids[j * len(prompts) : (j + 1) * len(prompts)] for j in range(len(block))]
    return out
