"""The real app with SmolLM2 in headless Chromium: make a vector, chat with and
without it, optimize it and apply the best setting, as a user would.

Screenshots go to tests/artifacts/screenshots/ (ignored by git); set
STEERSWARM_SCREENSHOT_DIR=docs/screenshots to refresh the docs' images.
"""

from __future__ import annotations

import logging
import re

import pytest

import presets as preset_examples
from steering import steerer_for
from steering.session import ModelSession
from ui.app import build_app
from ui.style import css_kwargs

pytestmark = pytest.mark.browser

log = logging.getLogger(__name__)

VIEWPORT = {"width": 1280, "height": 900}

# The first three sentences of docs/vectors.md's joy/grief vector, one per line.
JOY = "\n".join(preset_examples.JOY[:3])
GRIEF = "\n".join(preset_examples.GRIEF[:3])
MESSAGE = "Describe your morning in two sentences."


@pytest.fixture(scope="module")
def served(smollm2, serve, tmp_path_factory):
    """The standalone app on SmolLM2, served on a free localhost port."""
    session = ModelSession(lambda: smollm2)
    app = build_app(session, tmp_path_factory.mktemp("vectors"))
    try:
        yield serve(app, **css_kwargs(app.launch)), session
    finally:
        steerer_for(smollm2.model, smollm2.tokenizer, smollm2.name).reset()


@pytest.fixture
def page(browser, served):
    url, session = served
    session.current().steerer.reset()  # every test starts unsteered
    page = browser.new_page(viewport=VIEWPORT)
    page.goto(url)
    page.get_by_text("SmolLM2-135M-Instruct · 30 layers").wait_for(timeout=30_000)
    try:
        yield page
    finally:
        page.close()


def first_row(page) -> list[str]:
    """The cells of the first row of "Active steering vectors" (the table also
    holds empty cells it uses to measure columns: they are skipped)."""
    from playwright.sync_api import expect

    cells = page.locator("#active-vectors td")
    expect(cells.filter(has_text=re.compile(r"\S")).first).to_have_text("1")
    texts = [t.strip() for t in cells.all_text_contents() if t.strip()]
    return texts[:7]


def add_joy_vector(page, layer: int = 12, coefficient: float = 2.0) -> None:
    from playwright.sync_api import expect

    page.get_by_label("Concept prompts").fill(JOY)
    page.get_by_label("Contrast prompts").fill(GRIEF)
    layer_box = page.get_by_label("Layer", exact=True)
    layer_box.fill(str(layer))
    layer_box.press("Enter")
    page.get_by_label("Alpha").fill(str(coefficient))
    page.get_by_role("button", name="Add steering vector").click()
    expect(page.locator("#steering-status")).to_contain_text(
        f"Added vector #1: layer {layer}, alpha {coefficient:g}", timeout=60_000
    )
    table = page.locator("#active-vectors")
    expect(table).to_contain_text("I feel so joyful and happy today!")
    expect(table).to_contain_text("I feel so sad and heartbroken today.")


def test_steer_then_chat_beside_the_unsteered_model(page, screenshot_dir):
    from playwright.sync_api import expect

    add_joy_vector(page)
    assert first_row(page)[1:3] == ["12", "2"]
    page.screenshot(path=str(screenshot_dir / "steering-tab.png"), full_page=True)

    page.get_by_role("tab", name="Chat").click()
    page.get_by_label("Compare with unsteered").check()
    expect(page.locator("#unsteered-chat")).to_be_visible()
    tokens = page.get_by_label("number input for Max new tokens")
    tokens.fill("40")
    tokens.press("Enter")
    page.get_by_label("Message").fill(MESSAGE)
    page.get_by_role("button", name="Send", exact=True).click()
    expect(page.locator("#chat-status")).to_contain_text(
        "Replied with 1 steering vector active; the unsteered reply is on the right.",
        timeout=120_000,
    )
    steered = page.locator("#steered-chat [data-testid=bot]").last.inner_text().strip()
    unsteered = page.locator("#unsteered-chat [data-testid=bot]").last.inner_text().strip()
    log.info("steered reply: %r", steered)
    log.info("unsteered reply: %r", unsteered)
    assert steered and unsteered
    assert steered != unsteered
    expect(page.locator("#steered-chat [data-testid=user]").last).to_have_text(MESSAGE)
    page.screenshot(path=str(screenshot_dir / "chat-tab.png"), full_page=True)


def test_optimize_then_apply_best_then_another_point_of_the_front(page, screenshot_dir):
    """Optimize, see the target-vs-KL plot, apply the recommended setting, then
    a point of the front that is not the recommended one."""
    from playwright.sync_api import expect

    add_joy_vector(page)
    before = first_row(page)

    page.get_by_role("tab", name="Optimize").click()
    expect(
        page.get_by_role("checkbox", name=re.compile(r"^#1 layer 12 × 2: I feel so joyful"))
    ).to_be_checked()
    # Apply best is offered only for a real gain over the unsteered model. On
    # the demo's wording SmolLM2 leans "negative" (8 items: 0.75 unsteered);
    # this joy vector at layer 7, alpha 1 to 1.5, scores 0.875 there (measured;
    # layers 6 and 8 gain nothing), so the search is confined to layer 7. Its
    # alphas start low (0.2), where the score stays at the baseline's with a
    # smaller KL: such a setting is a point of the front that is not the
    # recommended one.
    page.get_by_role("button", name="Use example settings").click()  # the demo's task
    expect(page.locator("#optimize-status")).to_contain_text("Filled in the search settings")
    for label, value in (
        ("Limit", "8"),
        ("Batch size", "8"),
        ("Particles", "3"),
        ("Iterations", "2"),
        ("Lowest layer", "7"),
        ("Highest layer", "7"),
        ("Lowest alpha", "0.2"),
        ("Highest alpha", "1.5"),
        ("Held-out limit", "8"),
        ("KL budget", "0.5"),
    ):
        page.get_by_label(label, exact=True).fill(value)
    expect(page.get_by_label("Objective", exact=True)).to_have_value("guarded")
    page.get_by_role("button", name="Optimize vectors").click()

    progress = page.locator("#optimize-progress")
    # the baseline, 3 x 2 settings, then the baseline and the best on the held-out
    # task (and the best by target alone, when it is another setting: 10)
    expect(progress).to_contain_text(re.compile(r"[1-9] of (9|10) evaluations"), timeout=120_000)
    summary = page.locator("#optimize-summary")
    expect(summary).to_contain_text("Best setting found", timeout=360_000)
    expect(progress).to_contain_text(re.compile(r"(9 of 9|10 of 10) evaluations"))
    expect(page.locator("#optimize-status")).to_contain_text("Done.")
    expect(summary).to_contain_text("Objective: guarded (KL budget 0.5)")
    expect(page.locator("#convergence-plot img")).to_be_visible()
    expect(page.locator("#particle-plot img")).to_be_visible()
    expect(page.locator("#front-plot img")).to_be_visible()
    expect(page.locator("#evaluations")).to_contain_text("baseline")
    best = re.search(r"→ layer (\d+) × (-?[\d.]+)", summary.inner_text())
    assert best, summary.inner_text()
    page.screenshot(path=str(screenshot_dir / "optimize-tab.png"), full_page=True)

    page.get_by_role("button", name="Apply best").click()
    expect(page.locator("#optimize-status")).to_contain_text(
        "Applied the best setting", timeout=60_000
    )
    page.get_by_role("tab", name="Steering").click()
    expect(page.locator("#steering-status")).to_contain_text("Applied the best setting")
    after = first_row(page)
    assert after[1:3] == [best.group(1), best.group(2)], after
    assert after != before
    assert (
        after[4:6] == before[4:6]
    )  # the same prompts (cells 4, 5; the strength follows the alpha)

    # Another point of the front: the choices are numbered as on the plot, the
    # recommended one selected; pick one that is not recommended.
    page.get_by_role("tab", name="Optimize").click()
    point = page.get_by_label("Point of the front")
    expect(point).to_have_value(re.compile(r"\(recommended\)"))
    point.click()
    options = page.get_by_role("option")
    expect(options.first).to_be_visible()
    texts = options.all_inner_texts()
    log.info("points of the front: %s", texts)
    others = [t for t in texts if "(recommended)" not in t]
    assert others, f"the front has only the recommended point: {texts}"
    chosen = others[0].strip()
    page.get_by_role("option", name=chosen, exact=True).click()
    number, layer, alpha = re.match(r"(\d+) · .* · layer (\d+) × (-?[\d.]+)", chosen).groups()
    page.get_by_role("button", name="Apply this point").click()
    expect(page.locator("#optimize-status")).to_contain_text(
        f"Applied point {number} of the front: #1 → layer {layer} × {alpha}", timeout=60_000
    )
    page.get_by_role("tab", name="Steering").click()
    for _ in range(60):  # the table refreshes when the tab opens: wait for it
        if first_row(page)[1:3] == [layer, alpha]:
            break
        page.wait_for_timeout(500)
    point_row = first_row(page)
    assert point_row[1:3] == [layer, alpha], point_row
    assert [layer, alpha] != after[1:3] and point_row[4:6] == before[4:6]


def test_explore_scan_map_side_by_side_and_inspect(page, screenshot_dir):
    """The Explore tab end to end: scan a vector's layers and send the range to
    the Optimize form, fill a small map, compare two cells with the unsteered
    model, inspect the vector, then apply a cell."""
    from playwright.sync_api import expect

    add_joy_vector(page, layer=8)
    page.get_by_role("tab", name="Explore").click()
    status = page.locator("#explore-status")
    expect(page.locator("#explore-vector input")).to_have_value(
        re.compile(r"^#1 layer 8 "), timeout=30_000
    )

    page.get_by_role("button", name="Scan layers").click()
    expect(status).to_contain_text("Suggested layers", timeout=120_000)
    expect(page.locator("#explore-scan-plot img")).to_be_visible()
    low, high = re.search(r"Suggested layers (\d+)–(\d+)", status.inner_text()).groups()
    page.get_by_role("button", name="Use range in Optimize").click()
    expect(status).to_contain_text(f"layer bounds are now {low}–{high}")

    page.get_by_label("Layers (blank: 10 spread over the model)").fill("4, 8, 12")
    page.get_by_label("Strengths (× the layer's mean activation norm)").fill("0.25, 0.5")
    page.get_by_label("Neutral sentences (KL)").fill("4")
    page.get_by_role("button", name="Compute map").click()
    expect(status).to_contain_text("Done: 6 of 6 cells", timeout=240_000)
    expect(page.locator("#explore-map-plot img")).to_be_visible()

    cells = page.get_by_label("Cells (up to 4)")
    for name in ("layer 8 · strength 0.25", "layer 8 · strength 0.5"):
        cells.click()
        page.get_by_role("option", name=re.compile(re.escape(name))).click()
    page.get_by_label("Max new tokens").fill("16")
    page.get_by_role("button", name="Write completions").click()
    expect(status).to_contain_text("✓ Done.", timeout=180_000)
    completions = page.locator("#explore-compare-table")
    expect(completions).to_contain_text("unsteered")
    expect(completions).to_contain_text("layer 8 · strength 0.5")

    page.get_by_role("button", name="Inspect vector").click()
    expect(status).to_contain_text("Inspected", timeout=60_000)
    expect(page.locator("#explore-norm-plot img")).to_be_visible()
    page.screenshot(path=str(screenshot_dir / "explore-tab.png"), full_page=True)

    page.get_by_label("Cell", exact=True).click()
    page.get_by_role("option", name=re.compile(r"^layer 12 · strength 0.5")).click()
    page.get_by_role("button", name="Apply this cell").click()
    expect(status).to_contain_text("The vector is now at layer 12", timeout=60_000)
    page.get_by_role("tab", name="Optimize").click()
    expect(page.get_by_label("Lowest layer")).to_have_value(low)
    expect(page.get_by_label("Highest layer")).to_have_value(high)
    page.get_by_role("tab", name="Steering").click()
    for _ in range(60):  # the table refreshes when the tab opens: wait for it
        if first_row(page)[1] == "12":
            break
        page.wait_for_timeout(500)
    assert first_row(page)[1] == "12"


MANY_PROMPTS = "\n".join(
    f"Report {i}: clouds gather over the hills, then rain, then a little sun by evening."
    for i in range(800)
)


def _reload(page) -> None:
    page.reload()
    page.get_by_text("SmolLM2-135M-Instruct · 30 layers").wait_for(timeout=30_000)


def test_a_reloaded_page_follows_a_capture_and_cancels_it(page, screenshot_dir):
    """A page loaded during a capture showed an empty table under "1 steering
    vector active" and no word that the model was busy; the capture could not
    be cancelled. Now the reloaded page shows the user's vector, follows the
    capture's progress, and its Cancel stops it within seconds."""
    from playwright.sync_api import expect

    add_joy_vector(page)
    page.get_by_label("Concept prompts").fill(MANY_PROMPTS)
    page.get_by_label("Contrast prompts").fill("")
    page.get_by_role("button", name="Add steering vector").click()
    status = page.locator("#steering-status")
    running = re.compile(r"⟳ Capturing a vector: \d+ of 800 prompts")
    expect(status).to_contain_text(running, timeout=120_000)

    _reload(page)
    expect(status).to_contain_text(running, timeout=30_000)  # followed live on the new page
    expect(page.locator("#active-vectors")).to_contain_text("I feel so joyful and happy today!")
    page.screenshot(path=str(screenshot_dir / "reload-during-capture.png"), full_page=True)
    page.locator("#steering-cancel").click()
    expect(status).to_contain_text(
        re.compile(r"✕ The capture was cancelled after [\d,]+ of 800 prompts; nothing was changed"),
        timeout=60_000,
    )
    _reload(page)  # the server's state: the one vector, the model free
    expect(status).to_have_text("1 steering vector active.", timeout=30_000)
    assert first_row(page)[4].startswith("I feel so joyful")


def test_a_reloaded_page_follows_a_map_and_cancels_it(page, screenshot_dir):
    """A reloaded page lost a running Explore map, and its Cancel showed
    "Cancelling…" for ever. Now it follows the map and cancels it."""
    from playwright.sync_api import expect

    add_joy_vector(page)
    page.get_by_role("tab", name="Explore").click()
    expect(page.locator("#explore-vector input")).to_have_value(
        re.compile(r"^#1 layer 12 "), timeout=30_000
    )
    page.get_by_label("Layers (blank: 10 spread over the model)").fill(
        ", ".join(str(layer) for layer in range(30))
    )
    page.get_by_role("button", name="Compute map").click()
    status = page.locator("#explore-status")
    running = re.compile(r"Computing the map: \d+ of 240 cells")
    asks = re.compile(r"⏸ Computing the map would take about .* click Go on")
    expect(status).to_contain_text(re.compile(f"{running.pattern}|{asks.pattern}"), timeout=120_000)
    if asks.search(status.inner_text()):  # estimated over 15 minutes on this machine
        page.locator("#explore-go-on").click()
    expect(status).to_contain_text(running, timeout=120_000)

    _reload(page)
    page.get_by_role("tab", name="Explore").click()
    expect(status).to_contain_text(running, timeout=30_000)
    expect(page.locator("#explore-map-plot img")).to_be_visible(timeout=60_000)
    page.screenshot(path=str(screenshot_dir / "reload-during-map.png"), full_page=True)
    page.locator("#explore-cancel").click()
    expect(status).to_contain_text(re.compile(r"✕ Cancelled: \d+ of 240 cells\."), timeout=120_000)
