"""What a reader sees of a Markdown status line: rendered (CommonMark, raw HTML
on, as Gradio's Markdown) and reduced to its text. Tests that look for user
text in a status compare against this, since the Markdown source escapes it."""

from __future__ import annotations

import html
import re

from markdown_it import MarkdownIt

_RENDER = MarkdownIt("commonmark", {"html": True}).render


def shown(markdown: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", _RENDER(markdown))).strip()
