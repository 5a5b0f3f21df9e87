"""The caps on how much work one request may ask for, in one place.

A capture runs one forward pass per prompt and keeps every layer's mean per
prompt ([prompts, layers, hidden] float32: 69 KB per prompt on SmolLM2), so
its cost grows with the number of prompts and their length. Without a cap a
pasted file of 5,000 lines held the model for an hour. The caps are generous
for steering (a few dozen prompts already give a clear direction) and are
named in every message that refuses a request, so a user knows the number.
"""

from __future__ import annotations

# Prompts in one capture, per list (concept prompts, contrast prompts). Also
# the most a vector file may record per list.
MAX_PROMPTS_PER_CAPTURE = 2000

# Tokens in one prompt (the BOS token included); the model's own context may
# be smaller, and then that is the limit.
MAX_TOKENS_PER_PROMPT = 512

# Prompts per batched forward of a capture, and the padding bucket: a batch
# is padded to a multiple of this many tokens, so the tensors of a long
# capture come in a few repeated sizes that the allocator reuses instead of
# fragmenting memory with a new size per batch.
CAPTURE_BATCH = 16
PAD_BUCKET = 32

# The JSON metadata of a vector file, in characters, and its vectors: a
# file's description of a few vectors is kilobytes; more is refused before
# it is parsed.
MAX_METADATA_CHARS = 16 * 2**20
MAX_VECTORS_PER_FILE = 256

# An optimization whose evaluations left would take longer than this, timed
# from its first one, stops and asks before it goes on (ui/long_run.py); an
# unanswered question cancels it after the second number, so a page closed
# meanwhile does not hold the model for ever.
LONG_RUN_SECONDS = 15 * 60
LONG_RUN_ANSWER_SECONDS = 10 * 60


def count(number: int) -> str:
    """1,234 style, for messages."""
    return f"{number:,}"


def check_prompt_count(prompts: int) -> None:
    """Refuse a capture of more than MAX_PROMPTS_PER_CAPTURE prompts."""
    from steering.errors import InvalidInputError

    if prompts > MAX_PROMPTS_PER_CAPTURE:
        raise InvalidInputError(
            f"A capture takes at most {count(MAX_PROMPTS_PER_CAPTURE)} prompts "
            f"per list; got {count(prompts)}."
        )


def check_prompt_tokens(tokens: int, prompt: str) -> None:
    """Refuse a prompt of more than MAX_TOKENS_PER_PROMPT tokens."""
    from steering.errors import InvalidInputError

    if tokens > MAX_TOKENS_PER_PROMPT:
        raise InvalidInputError(
            f"A prompt is {count(tokens)} tokens long; a capture takes prompts of at "
            f"most {count(MAX_TOKENS_PER_PROMPT)} tokens: {prompt[:60]!r}…"
        )

# The OpenAI-compatible server (steering/serving, ui/api): requests waiting
# for the model beyond this many are refused with HTTP 429 rather than
# queued for ever; at most this many greedy requests share one batched
# generation; a request chooses at most this many vectors; a request body
# is at most this many bytes (a long conversation is kilobytes).
MAX_WAITING_REQUESTS = 32
MAX_BATCH_ROWS = 8
MAX_VECTORS_PER_REQUEST = 16
MAX_STOP_SEQUENCES = 4
MAX_STOP_CHARS = 200
MAX_REQUEST_BYTES = 2**20
