"""The Optimize step of the newcomer's walk, the same in the standalone app
and in the real webui: a small time budget, the plan checked, the run, the
verdict card read."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

WALK_BUDGET = "1"  # minutes: the smallest budget the walk can afford to show

log = logging.getLogger(__name__)


def optimize_and_read_verdict(page: Any, shot: Callable[[str], None]) -> str:
    """Set the walk's budget, check the plan, optimize and return the verdict
    card's text (screenshots "4-optimize" before the run, "5-verdict" after)."""
    from playwright.sync_api import expect

    from optimize.config.table import BY_NAME

    page.get_by_label("Time budget (minutes)").fill(WALK_BUDGET)
    expect(page.locator("#optimize-plan")).to_contain_text(
        f"as many settings as fit in {WALK_BUDGET} minute ({BY_NAME['particles'].default} "
        "particles per iteration"
    )
    shot("4-optimize")
    card = page.locator("#optimize-verdict")  # may hold an earlier run's verdict
    page.get_by_role("button", name="Optimize vectors").click()
    expect(card.locator("h3")).to_have_count(0)  # cleared: this run's card comes next
    expect(card.locator("h3")).to_be_visible(timeout=600_000)
    expect(page.locator("#optimize-status")).to_contain_text("Done.")
    verdict: str = card.inner_text()
    log.info("the walk's verdict: %s", verdict)
    shot("5-verdict")
    return verdict
