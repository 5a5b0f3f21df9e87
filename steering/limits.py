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


def count(number: int) -> str:
    """1,234 style, for messages."""
    return f"{number:,}"
