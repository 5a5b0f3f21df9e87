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
# meanwhile does not hold the model for ever. Every other job (a capture, a
# task vector, an Explore map...) is estimated before it starts and asks
# above the same threshold. The operator may lower it and set a limit above
# which a job is refused (ui/jobs.py JobLimits: `python extension.py
# --confirm-jobs-over`, `--refuse-jobs-over`; the webui's job_* settings).
LONG_RUN_SECONDS = 15 * 60
LONG_RUN_ANSWER_SECONDS = 10 * 60

# A vector's raw alpha: beyond it the residual stream is swamped and the model
# only babbles; useful alphas for a difference-of-means vector are 0.5-10.
MAX_ABS_ALPHA = 100.0

# A vector's strength (|alpha x V| / the layer's mean state norm): 1 already
# makes replies repeat. A mean vector at alpha 100 stays below about 100, so
# only a file with a made-up layer norm (1e-300 gave 2.6e301) reaches this.
MAX_ABS_STRENGTH = 1000.0

# A strength someone asks for (an API request, the search's bounds): at 8 the
# steering is eight times the state it is added to, far past the point where
# text stays readable (useful strengths are about 0.05-1).
MAX_REQUEST_STRENGTH = 8.0

# The norm of a direction. Hidden states of real models are at most a few
# thousand long; a GGUF of values near 3e38 (the float32 maximum) has an
# infinite norm and turned every reply empty.
MAX_DIRECTION_NORM = 1e6

# What a task-pairs vector may read: documents, answers per document (the
# correct one and the wrong ones; multiple-choice tasks have 2 to about 13),
# and characters per text (a 512-token text is about 2,500 characters; this
# refuses a pasted book before it is tokenized). A vector file of 10,000
# documents x 21 answers held the model for an estimated 62 hours.
MAX_TASK_ITEMS = 1000
MAX_ANSWERS_PER_ITEM = 16
MAX_TEXT_CHARS = 20_000

# The layer x strength map scores at most this many prompts of each list
# (the first ones): its grid row is one batch of every text times every
# strength, which for 2,000 + 2,000 prompts would need tens of gigabytes.
MAX_MAP_PROMPTS = 64

# Seconds Ray workers may take to start and load the model before the run is
# stopped with a message (RayOptions.start_timeout).
RAY_START_SECONDS = 300


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
