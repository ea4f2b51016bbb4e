"""Lines an AI server can cause at will: at most one per kind per interval,
with a count of the rest, and its text escaped (smartstream/logs.py)."""
from __future__ import annotations

import logging
import time

from smartstream.logs import Throttle, peer_text


def test_one_line_per_kind_per_interval_then_the_count(caplog):
    log = logging.getLogger("test.throttle")
    t = Throttle(log, interval_s=0.2)
    with caplog.at_level(logging.WARNING, "test.throttle"):
        for i in range(1000):
            t.log(logging.WARNING, "refused event", "refused event %d", i)
        t.log(logging.WARNING, "refused mark", "refused mark")
        time.sleep(0.25)
        t.log(logging.WARNING, "refused event", "refused event again")
    assert [r.getMessage() for r in caplog.records] == [
        "refused event 0", "refused mark",
        "refused event again (999 more like this in the last 0.2 s not logged)"]


def test_peer_text_cannot_start_a_line_of_its_own():
    forged = "down\n2026-01-01T00:00:00.000Z CRITICAL forged\r\x1b[2J"
    text = peer_text(forged)
    assert "\n" not in text and "\r" not in text and "\x1b" not in text
    assert text.startswith("down\\n2026")
    assert peer_text("x" * 1000, 10) == "x" * 10 + "...(990 more)"
