from __future__ import annotations

import logging

from bmsgate_notifier.sender import SecretFilter, check_url, mask, with_priority
from tests.support.notify import POVER


def test_mask_and_check() -> None:
    assert mask(POVER) == "pover://****@****"
    assert mask("ntfy://ntfy.sh/topic") == "ntfy://****"
    assert check_url(POVER) is None
    assert "nosuch://****" in (check_url("nosuch://abc") or "")
    assert "needs a scheme" in (check_url("just-a-token") or "")


def test_priority_added_unless_the_url_has_one() -> None:
    assert with_priority("psafer://KEY", "high").endswith("?priority=1")
    assert with_priority(POVER + "?priority=low", "high").endswith("?priority=low")
    assert with_priority("json://h/x", "high") == "json://h/x"


def test_secret_filter_masks_any_record() -> None:
    record = logging.LogRecord("apprise", logging.WARNING, "", 0, "failed %s", (POVER,), None)
    SecretFilter([POVER]).filter(record)
    assert "uQiRzpo4" not in record.getMessage() and "pover://****@****" in record.getMessage()
