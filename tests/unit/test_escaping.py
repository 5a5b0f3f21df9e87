"""User text is shown as text: no HTML, script, image or link from a prompt,
a task name, a file name or an error message that quotes input ever becomes
live markup in a status line, table or summary.

Rendered with markdown-it (CommonMark with raw HTML on, as Gradio's Markdown
allows it); tests/e2e/test_browser_escaping.py checks the real page's DOM.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from steering.models import ModelInfo
from tests.support.markdown_text import shown
from ui import format as fmt
from ui.steering_tab import SteeringActions

PAYLOADS = (
    '<img src=x onerror="window.__xss=1">',
    "<script>window.__xss=1</script>",
    "[link](http://x.example/)",
    "![img](http://x.example/i.png)",
    "<http://x.example/>",
    "**bold** # heading\n# second line heading",
    "$$x^2$$ | a | b |",
    "_em_ __strong__ ~~struck~~ `code` www.x.example a@x.example",
    "1. a list",
    "- a list",
    "> a quote & <b>bold</b>",
)
EVIL = " ".join(PAYLOADS)
RENDER = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"]).render
LIVE = re.compile(
    r"<(img|script|a|b|strong|h\d|table|em|s|del|code|ol|ul|li|blockquote)\b", re.IGNORECASE
)


def assert_inert(markdown: str) -> None:
    """No tag of ours in the rendered text but the paragraph itself."""
    rendered = RENDER(markdown)
    assert not LIVE.search(rendered), rendered


@pytest.mark.parametrize("payload", PAYLOADS)
def test_md_makes_each_payload_plain_text(payload):
    assert_inert(f"Status: {fmt.md(payload)}")
    assert_inert(fmt.md(payload))  # also at the start of a line
    # what a reader sees is exactly what was typed (line breaks become spaces)
    assert shown(fmt.md(payload)) == " ".join(payload.splitlines())


def test_status_lines_escape_user_text():
    assert_inert(fmt.failed("load vectors", f"File {EVIL!r} is not a vector file."))
    assert_inert(fmt.notice_prefix(f"The model {EVIL} was loaded."))
    info = ModelInfo(name=EVIL, model_type="llama", num_layers=4, hidden_size=32, max_context=128)
    assert_inert(fmt.model_line(info).replace("**Model:**", "Model:"))
    assert_inert(fmt.model_line(None, EVIL).replace("**Model:**", "Model:"))


def test_progress_html_escapes_the_note():
    rendered = fmt.progress_html(None, EVIL)
    assert "<img" not in rendered and "<script" not in rendered


def tags(markdown: str) -> list[str]:
    return re.findall(r"<(\w+)", RENDER(markdown))


def test_result_summary_escapes_prompts_and_task_names():
    from optimize import VectorRecord
    from tests.support.results import sample_result

    def summary(prompts, text):
        return fmt.result_summary(
            sample_result(
                vectors=(
                    VectorRecord(0, 12, 2.0, prompts, (text,)),
                    VectorRecord(2, 8, 1.0, ("c",)),
                ),
                metric=text,
            )
        )

    evil, plain = summary(PAYLOADS, EVIL), summary(("plain",) * len(PAYLOADS), "plain")
    # the same markup as a summary of plain words: the template's, none from the text
    assert tags(evil) == tags(plain)
    assert PAYLOADS[0] in shown(evil)


def test_steering_statuses_escape_prompts_and_file_names(tiny_session, tmp_path):
    actions = SteeringActions(tiny_session, tmp_path)
    *_, (rows, choices, status) = actions.add_vector(EVIL, "<b>calm</b>", 1, 1.0)
    assert status.startswith("✓ Added vector #1"), status
    # the table and the dropdown are plain text components: the prompt is kept as typed
    assert rows[0][4].startswith(PAYLOADS[0])
    *_, (_rows, _choices, status) = actions.remove_vector(choices["choices"][0][1])
    assert status.startswith("✓ Removed vector #1"), status
    assert_inert(status)
    assert "&lt;img" in status
    evil_file = tmp_path / "<img src=x onerror=alert(1)>[a](http:x).safetensors"
    evil_file.write_bytes(b"not a vector file")
    *_, (_rows, _choices, status) = actions.load_vectors(str(evil_file))
    assert status.startswith("⚠ Could not load the vectors"), status
    assert_inert(status)
    assert "&lt;img" in status


def test_file_names_of_saved_vectors_are_plain(tiny_session, tmp_path):
    actions = SteeringActions(tiny_session, tmp_path)
    list(actions.add_vector("good", "bad", 1, 1.0))
    *_, (saved, status) = actions.save_vectors("<img src=x>[l](http:x)_x_.safetensors")
    assert status.startswith("✓ Saved"), status
    assert_inert(status)
    assert Path(saved["value"]).parent == tmp_path
