"""Bad input as the sweeps type it, and the checks every refusal must pass:
a clear message, the active vectors as they were, the model's lock free."""

from __future__ import annotations

from typing import Any

GOOD = "I love this, it is wonderful."
HUGE = 10**12
LONG = "x" * 100_000
ODD = ("\u202e😀 שלום", "../../etc/passwd")  # right-to-left, emoji, Hebrew; a path


def refused(status: str) -> None:
    assert status.startswith("⚠ Could not"), status
    assert "unexpected error" not in status, status


def unchanged(session: Any, before: Any) -> None:
    steerer = session.current().steerer
    assert steerer.vectors == before
    assert steerer.steered_layers() == sorted({v.layer for v in before})
    assert not session.lock.locked()
