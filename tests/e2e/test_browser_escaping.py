"""In headless Chromium: prompts and a task name holding HTML, a script and
Markdown links are shown as text everywhere (status lines, the table, the
optimization summary); none becomes an element of the page. A run survives a
page reload: the reloaded page shows its progress, lets it go on and shows
its result; the reloaded Steering tab shows the active vectors while the run
holds the model. Cancel from any page, and a page opened after the
run getting its result, use the same registry and are tested without a
browser in tests/unit/test_jobs.py, to keep this to one run and one reload. Runs
on the tiny Llama (a few seconds of model work)."""

from __future__ import annotations

import re

import pytest

from ui.app import build_app_with_tabs

pytestmark = pytest.mark.browser

VIEWPORT = {"width": 1280, "height": 900}

IMG = '<img src="http://x.example/i.png" onerror="window.__xss=1">'
SCRIPT = "<script>window.__xss=2</script>"
LINK = "[link](http://x.example/l)"
IMAGE = "![img](http://x.example/m.png)"
CONCEPT = f"{IMG}\n{SCRIPT}\n{LINK}\n{IMAGE}"

NO_INJECTED = """() => ({
  xss: window.__xss === undefined ? null : window.__xss,
  imgs: [...document.querySelectorAll('img')].map(i => i.getAttribute('src') || '')
        .filter(s => s.includes('x.example')),
  links: [...document.querySelectorAll('a')].map(a => a.getAttribute('href') || '')
        .filter(h => h.includes('x.example')),
  scripts: [...document.querySelectorAll('script')].filter(s => s.text.includes('__xss')).length,
})"""


@pytest.fixture
def app_url(tiny_session, serve, tmp_path):
    """The app on the tiny Llama. Every run counts as long, so it stops after
    its baseline and asks to go on, holding the model: a run that is
    certainly still running when the page reloads, however fast the model."""
    app, tabs = build_app_with_tabs(tiny_session, tmp_path)
    tabs.optimize_actions.long_run_seconds = 0  # only optimization asks; a capture does not
    return serve(app)


def task_box(page):
    """What "better" means: a task of the folder, or any name typed in."""
    return page.get_by_label(re.compile(r"^What .better. means"))


def assert_nothing_injected(page) -> None:
    assert page.evaluate(NO_INJECTED) == {"xss": None, "imgs": [], "links": [], "scripts": 0}


def test_user_text_never_becomes_markup(browser, app_url):
    from playwright.sync_api import expect

    page = browser.new_page(viewport=VIEWPORT)
    page.goto(app_url)
    page.get_by_text("tiny-llama · 4 layers").wait_for(timeout=30_000)
    page.get_by_label("Concept prompts").fill(CONCEPT)
    page.get_by_label("Contrast prompts").fill("calm <b>bold</b>")
    page.get_by_role("button", name="Add steering vector").click()
    expect(page.locator("#steering-status")).to_contain_text("Added vector #1", timeout=60_000)
    expect(page.locator("#active-vectors")).to_contain_text(IMG)
    assert_nothing_injected(page)

    page.get_by_role("tab", name="Optimize").click()
    task_box(page).fill(IMG + LINK)
    task_box(page).press("Enter")  # a typed name is taken on Enter
    page.get_by_role("button", name="Optimize vectors").click()
    status = page.locator("#optimize-status")
    # refused as a name lm-eval never uses, quoted as typed (cut after 60 characters)
    expect(status).to_contain_text("is not a name lm-eval uses", timeout=120_000)
    expect(status).to_contain_text(IMG)
    assert_nothing_injected(page)

    start_small_run(page)
    reload_while_it_runs(page)
    # go on from the reloaded page (its own Go on button), and see the result there
    page.locator("#optimize-go-on").click()
    summary = page.locator("#optimize-summary")
    expect(summary).to_contain_text("Vector #1", timeout=120_000)
    expect(summary).to_contain_text(IMG[:30])
    expect(page.locator("#optimize-status")).to_contain_text("✓ Done.")
    assert_nothing_injected(page)

    page.get_by_role("tab", name="Steering").click()
    page.get_by_label("Vector to remove").click()
    page.get_by_role("option").first.click()
    page.get_by_role("button", name="Remove vector").click()
    expect(page.locator("#steering-status")).to_contain_text("Removed vector #1", timeout=60_000)
    expect(page.locator("#steering-status")).to_contain_text(IMG[:20])
    assert_nothing_injected(page)
    page.close()


def start_small_run(page) -> None:
    """One particle, one iteration on 8 documents; it stops after its baseline
    to ask whether to go on (the fixture makes every run long)."""
    from playwright.sync_api import expect

    page.get_by_role("tab", name="Optimize").click()
    task_box(page).fill("steer_sentiment")
    task_box(page).press("Enter")
    page.get_by_label("Time budget (minutes)").fill("0")  # no budget: a fixed swarm
    page.locator("#optimize-advanced").get_by_text("Advanced", exact=True).click()
    page.locator("#optimize-advanced").get_by_label("Limit", exact=True).wait_for()
    for label, value in (("Limit", "8"), ("Batch size", "8"), ("Particles", "1"),
                         ("Iterations", "1")):
        page.get_by_label(label, exact=True).fill(value)
    page.get_by_role("button", name="Optimize vectors").click()
    expect(page.locator("#optimize-status")).to_contain_text(
        "⏸ This run would take", timeout=120_000
    )


def reload_while_it_runs(page) -> None:
    """Reload the page while the run waits holding the model: the Steering tab
    shows the active vector (not "No steering vectors are active"), and the
    Optimize tab the run's progress and its question."""
    from playwright.sync_api import expect

    page.reload()
    page.get_by_text("tiny-llama · 4 layers").wait_for(timeout=30_000)
    table = page.locator("#active-vectors")
    expect(table).to_contain_text(IMG, timeout=30_000)
    expect(table).not_to_contain_text("No steering vectors")
    assert_nothing_injected(page)
    page.get_by_role("tab", name="Optimize").click()
    expect(page.locator("#optimize-progress")).to_contain_text(
        re.compile(r"1 of \d+ evaluations"), timeout=30_000
    )
    expect(page.locator("#optimize-status")).to_contain_text("⏸ This run would take")
